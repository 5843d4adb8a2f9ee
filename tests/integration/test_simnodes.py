"""Simulated nodes (swarmkit_py/testing/simnodes.py) against a real manager agent.

A real agent process on loopback, 20 simulated workers in this process joining it with the
join token over real TLS, and the Docker SDK over the agent's TLS API as the operator's view:
the nodes are Ready, a 40-replica service runs on them (the manager is drained, so every task
is a simulated node's), and removing the service shuts the tasks down on the nodes.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from swarmkit_py.store.objects import TaskState
from swarmkit_py.testing.agents import AgentCluster
from swarmkit_py.testing.simnodes import SIM_ENGINE_VERSION, SimFleet

pytestmark = pytest.mark.slow

NODES = 20
REPLICAS = 40


class LoopThread:
    """An asyncio loop in a thread, so the blocking SDK and the fleet can run side by side."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args, **kwargs):
        async def wrap():
            return fn(*args, **kwargs)
        return self.run(wrap())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def manager(tmp_path):
    c = AgentCluster(tmp_path)
    m1 = c.add("m1")
    c.init(m1)
    c.start(m1)
    c.client_bundle(m1)
    yield c, m1
    c.stop_all()


def test_simulated_nodes_join_run_a_service_and_shut_it_down(manager, tmp_path):
    c, m1 = manager
    sdk = c.sdk(m1)
    mgr_node = sdk.nodes.list()[0]
    mgr_node.update({**mgr_node.attrs["Spec"], "Availability": "drain"})
    token = sdk.swarm.attrs["JoinTokens"]["Worker"]

    lt = LoopThread()
    fleet = lt.call(SimFleet, NODES, base=tmp_path / "sim")
    try:
        lt.run(fleet.up(m1.addr, token))
        lt.run(fleet.wait_connected(60))
        sim_ids = {n.node_id for n in fleet.nodes}
        assert len(sim_ids) == NODES

        def ready_sim_nodes():
            return [n for n in sdk.nodes.list() if n.id in sim_ids
                    and n.attrs["Status"]["State"] == "ready"]
        c.wait_for(lambda: len(ready_sim_nodes()) == NODES, 30, f"{NODES} simulated nodes Ready")
        node = ready_sim_nodes()[0]
        assert node.attrs["Spec"]["Role"] == "worker"
        assert node.attrs["Description"]["Engine"]["EngineVersion"] == SIM_ENGINE_VERSION
        assert node.attrs["Description"]["Resources"]["NanoCPUs"] == 4 * 10**9

        svc = sdk.services.create("busybox", ["sleep", "3600"], name="simweb",
                                  mode={"Replicated": {"Replicas": REPLICAS}})

        def running():
            return [t for t in svc.tasks(filters={"desired-state": "running"})
                    if t["Status"]["State"] == "running"]
        c.wait_for(lambda: len(running()) == REPLICAS, 60, f"{REPLICAS} tasks Running")
        tasks = running()
        assert {t["NodeID"] for t in tasks} <= sim_ids
        assert len({t["NodeID"] for t in tasks}) == NODES  # spread: two per node
        assert sorted(t["Slot"] for t in tasks) == list(range(1, REPLICAS + 1))
        assert all(t["Status"]["ContainerStatus"]["ContainerID"].startswith("sim") for t in tasks)
        assert lt.call(fleet.running) == REPLICAS
        # Every node got its full set once (its session) and then only what changed.
        pushes = c.metrics(m1)
        assert pushes['swarmkit_dispatcher_assignment_pushes_total{kind="incremental"}'] >= NODES
        assert pushes['swarmkit_dispatcher_assignment_pushes_total{kind="full"}'] >= NODES

        svc.remove()

        def shut_down():
            return sum(1 for n in fleet.nodes for ctl in n.executor.controllers.values()
                       if ctl.state == TaskState.SHUTDOWN)
        c.wait_for(lambda: lt.call(shut_down) == REPLICAS, 60, "every task shut down on its node")
        assert lt.call(fleet.running) == 0
    finally:
        lt.run(fleet.stop())
        lt.close()
