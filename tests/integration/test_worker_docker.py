"""Assignments to containers and back, with the real Docker engine: a real RpcServer and
Dispatcher over a LocalProposer on loopback, a WorkerSession, and the TaskWorker with the
Docker executor. The store is written the way the orchestrator and scheduler would.

Every container carries this run's unique node id; teardown removes exactly those.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import closing

import pytest

from swarmkit_py.engine import Engine
from swarmkit_py.manager.dispatcher import Dispatcher, StaticDirectory, params_identity
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.rpc import RpcServer
from swarmkit_py.store import (
    ContainerSpec,
    Node,
    NodeRole,
    NodeSpec,
    NodeStatus,
    Service,
    ServiceSpec,
    Task,
    TaskSpec,
    TaskState,
    TaskStatus,
    Transaction,
    new_id,
)
from swarmkit_py.taskimage import TASK_IMAGE, ensure_task_image
from swarmkit_py.worker.executor import DockerExecutor
from swarmkit_py.worker.executor.docker_adapter import LABEL_NODE_ID, LABEL_TASK_ID
from swarmkit_py.worker.reconcile import TaskWorker
from swarmkit_py.worker.session import WorkerSession

pytestmark = pytest.mark.slow
LOOPBACK = "127.0.0.1"
S = TaskState


async def until(predicate, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


class Cluster:
    def __init__(self, engine, node_id: str):
        self.engine = engine
        self.node_id = node_id
        self.proposer = LocalProposer()
        self.server = RpcServer(LOOPBACK, 0)
        self.dispatcher = Dispatcher(self.proposer, heartbeat_period=0.5,
                                     identify=params_identity, directory=StaticDirectory())
        self.dispatcher.register(self.server)
        self.service = Service(id=new_id(), spec=ServiceSpec(name=f"wk{node_id[-6:]}"))
        self.session: WorkerSession | None = None
        self.worker: TaskWorker | None = None
        self.executor: DockerExecutor | None = None

    async def up(self):
        await self.server.start()
        self.dispatcher.start()
        node = Node(id=self.node_id, spec=NodeSpec(role=NodeRole.WORKER), role=NodeRole.WORKER,
                    status=NodeStatus())
        await self.proposer.propose(Transaction().create(node).create(self.service))
        return self

    async def start_worker(self):
        self.session = WorkerSession(self.node_id, [f"{LOOPBACK}:{self.server.bound_port}"],
                                     describe=None)
        self.executor = DockerExecutor()
        self.worker = TaskWorker(self.session, self.executor, retry_initial=0.1, retry_max=1.0)
        self.worker.start()
        self.session.start()
        await self.session.wait_connected(5)

    async def stop_worker(self):
        if self.worker is not None:
            await self.worker.stop()
            await self.session.stop()
            self.executor.close()
            self.worker = self.session = self.executor = None

    async def down(self):
        await self.stop_worker()
        await self.dispatcher.stop()
        await self.server.stop()

    async def add_task(self, slot: int, args: list[str], grace_s: float = 1) -> Task:
        t = Task(
            id=new_id(), service_id=self.service.id, slot=slot, node_id=self.node_id,
            name=f"{self.service.spec.name}.{slot}", desired_state=S.RUNNING,
            status=TaskStatus(state=S.ASSIGNED),
            spec=TaskSpec(container_spec=ContainerSpec(
                image=TASK_IMAGE, command=["sh", "-c"], args=args,
                stop_grace_period=int(grace_s * 1e9))),
        )
        await self.proposer.propose(Transaction().create(t))
        return t

    async def set_desired(self, task_id: str, desired: TaskState):
        t = self.task(task_id).clone()
        t.desired_state = desired
        await self.proposer.propose(Transaction().update(t))

    def task(self, task_id: str) -> Task:
        return self.proposer.store.view().get_task(task_id)

    def state(self, task_id: str) -> TaskState:
        return self.task(task_id).status.state

    def containers(self, task_id: str | None = None, running_only: bool = False) -> list[dict]:
        """This node's containers (of one task) as the engine lists them (no inspect, so a
        container removed meanwhile cannot fail the listing)."""
        label = f"{LABEL_TASK_ID}={task_id}" if task_id else f"{LABEL_NODE_ID}={self.node_id}"
        found = self.engine.api.containers(all=not running_only, filters={"label": label})
        return [c for c in found if (c.get("Labels") or {}).get(LABEL_NODE_ID) == self.node_id]


@pytest.fixture
async def cluster(docker_engine):
    with closing(Engine()) as engine:
        ensure_task_image(engine)
    node_id = f"wrk{uuid.uuid4().hex[:22]}"
    c = await Cluster(docker_engine, node_id).up()
    yield c
    await c.down()
    for ctr in docker_engine.containers.list(all=True,
                                             filters={"label": f"{LABEL_NODE_ID}={node_id}"}):
        ctr.remove(force=True)


async def test_tasks_run_stop_fail_and_survive_a_worker_restart(cluster):
    await cluster.start_worker()
    a = await cluster.add_task(1, ["sleep 300"])
    b = await cluster.add_task(2, ["sleep 300"])

    # Assigned -> containers running, reported running with their container ids.
    for t in (a, b):
        await until(lambda t=t: cluster.state(t.id) == S.RUNNING, f"{t.id} running in store")
        cs = cluster.task(t.id).status.container_status
        [ctr] = cluster.containers(t.id, running_only=True)
        assert cs.container_id == ctr["Id"] and cs.pid > 0
        assert ctr["Names"] == [f"/{cluster.service.spec.name}.{t.slot}.{t.id}"]

    # Desired shutdown -> stopped and removed, reported shutdown.
    await cluster.set_desired(a.id, S.SHUTDOWN)
    await until(lambda: cluster.state(a.id) == S.SHUTDOWN, "a shutdown in store")
    await until(lambda: not cluster.containers(a.id), "a's container removed")
    assert cluster.state(b.id) == S.RUNNING

    # Killing a container -> failed with the exit code reported.
    [ctr] = cluster.containers(b.id)
    cluster.engine.api.kill(ctr["Id"])
    await until(lambda: cluster.state(b.id) == S.FAILED, "b failed in store")
    st = cluster.task(b.id).status
    assert st.err == "task: non-zero exit (137)" and st.container_status.exit_code == 137
    # A task that completes on its own is complete.
    c = await cluster.add_task(3, ["exit 0"])
    await until(lambda: cluster.state(c.id) == S.COMPLETE, "c complete in store")

    # Restart the worker: a running task's container is adopted (not recreated), and the
    # container of a task no longer assigned is removed once the first set arrives.
    d = await cluster.add_task(4, ["sleep 300"])
    await until(lambda: cluster.state(d.id) == S.RUNNING, "d running")
    e = await cluster.add_task(5, ["sleep 300"])
    await until(lambda: cluster.state(e.id) == S.RUNNING, "e running")
    [d_ctr] = cluster.containers(d.id, running_only=True)
    await cluster.stop_worker()
    assert cluster.containers(d.id, running_only=True), "stopping the worker keeps containers"
    # While the worker is away, e is written off (what the orchestrator does with a down
    # node's tasks) and deleted by the reaper, and b's failure is handled (desired shutdown).
    await cluster.proposer.propose(Transaction().delete("task", e.id))
    await cluster.set_desired(b.id, S.SHUTDOWN)
    await cluster.start_worker()
    await until(lambda: not cluster.containers(e.id), "stale container of e removed")
    await until(lambda: not cluster.containers(b.id), "b's exited container removed")
    [d_again] = cluster.containers(d.id, running_only=True)
    assert d_again["Id"] == d_ctr["Id"]
    assert d.id in cluster.worker.reconciler.adopted
    assert cluster.state(d.id) == S.RUNNING
    # The adopted task is still driven: stopping it works as for any other.
    await cluster.set_desired(d.id, S.SHUTDOWN)
    await until(lambda: cluster.state(d.id) == S.SHUTDOWN, "adopted d shut down")
    await until(lambda: not cluster.containers(d.id), "d removed")


async def test_a_lost_change_is_repaired_by_a_resync(cluster):
    """Incremental assignments end to end: the worker gets its set, then changes; one change
    is lost on the way (the leader believes it was sent), so the next one does not apply on
    top of what the worker holds: the worker asks for its full set, and the task of the lost
    change runs too."""
    await cluster.start_worker()
    a = await cluster.add_task(1, ["sleep 300"])
    await until(lambda: cluster.state(a.id) == S.RUNNING, "a running")
    pusher = cluster.dispatcher.assignments
    assert pusher.full_pushes == 1  # the session's set; what follows are changes

    real_push, lost = cluster.dispatcher.push, []

    async def lose_one(node_id, method, params=None, *, frame=None):
        if not lost and "changed" in (params or {}):
            lost.append(params)
            return True  # the leader thinks it went out
        return await real_push(node_id, method, params, frame=frame)

    cluster.dispatcher.push = lose_one
    b = await cluster.add_task(2, ["sleep 300"])
    await until(lambda: lost, "b's change lost")
    c = await cluster.add_task(3, ["sleep 300"])
    for t in (b, c):
        await until(lambda t=t: cluster.state(t.id) == S.RUNNING, f"{t.id} running after the resync")
    assert [t["id"] for t in lost[0]["changed"]] == [b.id]
    assert cluster.worker.reconciler.resyncs == 1
    assert cluster.dispatcher.counters["assignment_resyncs"] == 1
    assert pusher.full_pushes == 2
    [a_ctr] = cluster.containers(a.id, running_only=True)  # a was left alone throughout
    assert cluster.task(a.id).status.container_status.container_id == a_ctr["Id"]
