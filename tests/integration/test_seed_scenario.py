"""The seed scenario of the services issue: a leader's host dies with a task on it.

5 nodes, 1 manager + 4 workers, a 3-replica service; two workers promoted (3 managers); the
leader's agent is SIGKILLed and its containers removed (the host died). From another manager:
a new leader, the old one Down, 3 replicas running on the survivors, healthy tasks untouched;
the dead node restarts, rejoins and runs no stale task.
"""

from __future__ import annotations

import time

import pytest

from swarmkit_py.taskimage import TASK_IMAGE
from swarmkit_py.testing.agents import NODE_LABEL, SERVICE_LABEL, AgentCluster

pytestmark = pytest.mark.slow



def _nodes(c, via):
    out = c.docker(via, "node", "ls", "--format", "{{.Hostname}}|{{.Status}}|{{.ManagerStatus}}").stdout
    return {r[0]: r[1:] for r in (line.split("|") for line in out.splitlines() if line)}


def _running(c, via, svc):
    out = c.docker(via, "service", "ps", svc, "-f", "desired-state=running", "--no-trunc",
                   "--format", "{{.ID}}|{{.Node}}|{{.CurrentState}}").stdout
    rows = [line.split("|") for line in out.splitlines() if line]
    return [(r[0], r[1]) for r in rows if r[2].startswith("Running")]


@pytest.fixture
def cluster(tmp_path, docker_engine):
    c = AgentCluster(tmp_path)
    yield c, docker_engine
    c.stop_all()
    c.remove_task_containers(docker_engine)


def test_leader_host_dies_with_a_task_and_comes_back(cluster):
    c, engine = cluster
    m1 = c.add("m1")
    c.init(m1)
    c.start(m1)
    c.client_bundle(m1)
    token = c.docker(m1, "swarm", "join-token", "-q", "worker").stdout.strip()
    ws = []
    for i in range(4):
        w = c.add(f"w{i}")
        c.join(w, token, m1)
        c.start(w)
        ws.append(w)
    c.wait_for(lambda: [v[0] for v in _nodes(c, m1).values()].count("Ready") == 5, 30, "5 nodes Ready")
    # the leader's host must run a task: spread over every node with one replica per node max
    c.docker(m1, "service", "create", "-d", "--name", "web", "--replicas", "3", "--constraint", "node.hostname!=w3",
             "--replicas-max-per-node", "1", TASK_IMAGE, "sleep", "3600")
    c.wait_for(lambda: len(_running(c, m1, "web")) == 3, 60, "3 replicas running")
    c.docker(m1, "node", "promote", "w0", "w1")
    c.wait_for(lambda: sorted(v[1] for v in _nodes(c, m1).values() if v[1]) == ["Leader", "Reachable", "Reachable"],
               40, "3 managers")
    # settled: every node knows the three managers it can fail over to
    c.wait_for(lambda: all(c.metrics(n)["swarmkit_worker_known_managers"] == 3 for n in c.nodes.values()), 20,
               "every node knows the 3 managers")
    before = _running(c, m1, "web")
    leader = next(n for n in c.nodes.values() if _nodes(c, m1)[n.name][1] == "Leader")
    assert leader.name in {node for _, node in before}, before
    survivors_tasks = {tid for tid, node in before if node != leader.name}
    other = next(n for n in (m1, ws[0], ws[1]) if n is not leader)

    # the host dies: agent SIGKILLed, its containers gone with it
    leader_id = leader.node_state()["node_id"]
    t0 = time.monotonic()
    c.kill(leader)
    for ct in engine.containers.list(all=True, filters={"label": f"{NODE_LABEL}={leader_id}"}):
        ct.remove(force=True)

    c.wait_for(lambda: any(v[1] == "Leader" for h, v in _nodes(c, other).items() if h != leader.name), 15, "a new leader")
    c.wait_for(lambda: _nodes(c, other)[leader.name][0] == "Down", 20, "the dead leader Down")
    c.wait_for(lambda: len(_running(c, other, "web")) == 3, 30, "3 replicas running again")
    back_in = time.monotonic() - t0
    after = _running(c, other, "web")
    assert leader.name not in {node for _, node in after}
    assert survivors_tasks <= {tid for tid, _ in after}, "a healthy node's task was rescheduled"
    assert back_in < 15, f"replicas back only after {back_in:.1f}s"

    # the dead node comes back: it rejoins and runs nothing stale
    c.start(leader)
    c.wait_for(lambda: _nodes(c, other)[leader.name] == ["Ready", "Reachable"], 40, "old leader back as Reachable")
    time.sleep(2)
    running_there = engine.containers.list(filters={"label": [f"{NODE_LABEL}={leader_id}", f"{SERVICE_LABEL}=web"]})
    assert running_there == [], "the returning node still runs a stale task"
    assert len(_running(c, other, "web")) == 3
    assert len(engine.containers.list(filters={"label": f"{SERVICE_LABEL}=web"})) == 3


def _managers_cluster(c, n_managers):
    m1 = c.add("m1")
    c.init(m1)
    c.start(m1)
    c.client_bundle(m1)
    mtok = c.docker(m1, "swarm", "join-token", "-q", "manager").stdout.strip()
    ms = [m1]
    for i in range(n_managers - 1):
        m = c.add(f"m{i + 2}")
        c.join(m, mtok, m1)
        c.start(m)
        ms.append(m)
        c.wait_for(lambda m=m: _nodes(c, m1).get(m.name, ["", ""])[1] == "Reachable", 30, f"{m.name} Reachable")
    return ms


def test_five_managers_survive_losing_two(cluster):
    c, engine = cluster
    ms = _managers_cluster(c, 5)
    leader = next(m for m in ms if _nodes(c, ms[0])[m.name][1] == "Leader")
    victims = [leader] + [m for m in ms if m is not leader][:1]
    for v in victims:
        c.kill(v)
    via = next(m for m in ms if m not in victims)
    dead = {v.name for v in victims}
    c.wait_for(lambda: any(v[1] == "Leader" for h, v in _nodes(c, via).items() if h not in dead), 15,
               "a leader among the 3 left")
    c.docker(via, "service", "create", "-d", "--name", "still", "--replicas", "2", TASK_IMAGE, "sleep", "3600")
    c.wait_for(lambda: len(_running(c, via, "still")) == 2, 60, "a service runs on the survivors")


def test_two_managers_losing_one_refuse_writes_but_answer_reads(cluster):
    c, engine = cluster
    m1, m2 = _managers_cluster(c, 2)
    c.docker(m1, "service", "create", "-d", "--name", "before", "--replicas", "1", TASK_IMAGE, "sleep", "3600")
    c.kill(m1)
    r = c.wait_for(lambda: (x := c.docker(m2, "service", "create", "-d", "--name", "after", TASK_IMAGE, "sleep", "1",
                                          check=False)).returncode != 0 and "does not have a leader" in x.stderr and x,
                   20, "writes refused without quorum")
    assert "managers are online" in r.stderr
    assert "before" in c.docker(m2, "service", "ls").stdout  # reads still answered
