"""Services on real agents and the real Docker engine, driven with the docker CLI.

All agents share this machine's engine (each only touches containers labelled with its own
node id), so a "host crash" is a SIGKILL of the agent plus removing its containers.
"""

from __future__ import annotations

import time

import pytest

from swarmkit_py.taskimage import TASK_IMAGE
from swarmkit_py.testing.agents import NODE_LABEL, SERVICE_LABEL, AgentCluster

pytestmark = pytest.mark.slow



def _containers(engine, **labels):
    flt = [f"{k}={v}" for k, v in labels.items()]
    return engine.containers.list(filters={"label": flt})


def _tasks(c, via, service, running_only=True):
    fmt = "{{.Name}}|{{.Node}}|{{.DesiredState}}|{{.CurrentState}}"
    args = ["service", "ps", service, "--format", fmt, "--no-trunc"]
    if running_only:
        args += ["-f", "desired-state=running"]
    out = c.docker(via, *args).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [[r[0].strip(), r[1], r[2], r[3].split()[0] if r[3].split() else ""] for r in rows]


def _running(c, via, service):
    return [t for t in _tasks(c, via, service) if t[3] == "Running"]


@pytest.fixture(scope="module")
def swarm(tmp_path_factory, docker_engine):
    base = tmp_path_factory.mktemp("swarm")
    c = AgentCluster(base)
    m1 = c.add("m1")
    c.init(m1)
    c.start(m1)
    c.client_bundle(m1)
    token = c.docker(m1, "swarm", "join-token", "-q", "worker").stdout.strip()
    workers = []
    for i in range(3):
        w = c.add(f"w{i}")
        c.join(w, token, m1)
        c.start(w)
        workers.append(w)
    c.wait_for(lambda: c.docker(m1, "node", "ls").stdout.count("Ready") == 4, 30, "4 nodes Ready")
    yield c, m1, workers, docker_engine
    for svc in c.docker(m1, "service", "ls", "-q", check=False).stdout.split():
        c.docker(m1, "service", "rm", svc, check=False)
    c.stop_all()
    c.remove_task_containers(docker_engine)


def test_replicated_service_runs_labelled_containers_and_scales(swarm):
    c, m1, workers, engine = swarm
    # without -d the CLI follows convergence the way it does against dockerd
    r = c.docker(m1, "service", "create", "--name", "web", "--replicas", "3", TASK_IMAGE, "sleep", "3600", timeout=90)
    assert "converged" in r.stdout, r.stdout + r.stderr
    cts = _containers(engine, **{SERVICE_LABEL: "web"})
    assert len(cts) == 3
    assert {ct.labels[NODE_LABEL] for ct in cts} <= {n.node_state()["node_id"] for n in c.nodes.values()}
    assert all(ct.name.startswith("web.") for ct in cts)

    c.docker(m1, "service", "scale", "-d", "web=6")
    c.wait_for(lambda: len(_running(c, m1, "web")) == 6 and len(_containers(engine, **{SERVICE_LABEL: "web"})) == 6,
               60, "6 replicas running")
    c.docker(m1, "service", "scale", "-d", "web=2")
    c.wait_for(lambda: len(_containers(engine, **{SERVICE_LABEL: "web"})) == 2, 60, "scaled back to 2 containers")
    assert sorted(t[0] for t in _running(c, m1, "web")) == ["web.1", "web.2"]
    c.docker(m1, "service", "rm", "web")
    c.wait_for(lambda: not _containers(engine, **{SERVICE_LABEL: "web"}), 60, "containers removed with the service")


def test_global_service_drain_and_constraints(swarm):
    c, m1, workers, engine = swarm
    c.docker(m1, "service", "create", "-d", "--name", "agent", "--mode", "global", TASK_IMAGE, "sleep", "3600")
    c.wait_for(lambda: len(_containers(engine, **{SERVICE_LABEL: "agent"})) == 4, 60, "one global task per node")

    c.docker(m1, "node", "update", "--label-add", "zone=a", "w0")
    c.docker(m1, "service", "create", "-d", "--name", "pinned", "--replicas", "2", "--constraint", "node.labels.zone==a",
             TASK_IMAGE, "sleep", "3600")
    c.wait_for(lambda: len(_running(c, m1, "pinned")) == 2, 60, "pinned replicas running")
    assert {t[1] for t in _running(c, m1, "pinned")} == {"w0"}

    c.docker(m1, "node", "update", "--availability", "drain", "w0")
    c.wait_for(lambda: not [t for t in _tasks(c, m1, "agent") if t[1] == "w0"], 60, "drain removes the global task")
    c.wait_for(lambda: all(t[3] == "Pending" for t in _tasks(c, m1, "pinned")), 60,
               "pinned tasks pending: no other node matches")
    err = c.docker(m1, "service", "ps", "pinned", "--format", "{{.Error}}", "-f", "desired-state=running").stdout
    assert "no suitable node" in err
    c.docker(m1, "node", "update", "--availability", "active", "w0")
    c.wait_for(lambda: len(_running(c, m1, "pinned")) == 2, 60, "pinned back after activate")
    c.docker(m1, "service", "rm", "agent", "pinned")


def test_restart_policy_and_failed_update_rolls_back(swarm):
    c, m1, workers, engine = swarm
    c.docker(m1, "service", "create", "-d", "--name", "flaky", "--replicas", "1", "--restart-condition", "on-failure",
             "--restart-delay", "100ms", TASK_IMAGE, "sh", "-c", "sleep 1; exit 3")
    c.wait_for(lambda: len([t for t in _tasks(c, m1, "flaky", running_only=False) if "Failed" in t[3]]) >= 2, 60,
               "the failing task is restarted")
    c.docker(m1, "service", "rm", "flaky")

    c.docker(m1, "service", "create", "-d", "--name", "roll", "--replicas", "4", "--update-parallelism", "2",
             "--update-delay", "200ms", "--update-monitor", "2s", "--update-failure-action", "rollback",
             TASK_IMAGE, "sleep", "3600")
    c.wait_for(lambda: len(_running(c, m1, "roll")) == 4, 60, "4 replicas")
    # an update whose tasks die at once: rolled back to the previous spec
    c.docker(m1, "service", "update", "-d", "--args", "sh -c 'exit 1'", "roll")
    c.wait_for(lambda: c.docker(m1, "service", "inspect", "roll", "--format", "{{.UpdateStatus.State}}").stdout.strip()
               == "rollback_completed", 90, "failed update rolled back")
    c.wait_for(lambda: len(_running(c, m1, "roll")) == 4, 60, "4 replicas after rollback")
    spec_args = c.docker(m1, "service", "inspect", "roll", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Args}}").stdout
    assert "3600" in spec_args
    c.docker(m1, "service", "rm", "roll")


def test_rolling_update_replaces_parallelism_at_a_time(swarm):
    c, m1, workers, engine = swarm
    c.docker(m1, "service", "create", "-d", "--name", "up", "--replicas", "4", "--update-parallelism", "1",
             "--update-delay", "300ms", "--update-monitor", "300ms", TASK_IMAGE, "sleep", "3600")
    c.wait_for(lambda: len(_running(c, m1, "up")) == 4, 60, "4 replicas")
    c.docker(m1, "service", "update", "-d", "--env-add", "V=2", "up")
    seen_max_down = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = c.docker(m1, "service", "inspect", "up", "--format", "{{.UpdateStatus.State}}").stdout.strip()
        running = len(_running(c, m1, "up"))
        seen_max_down = max(seen_max_down, 4 - running)
        if state == "completed":
            break
        time.sleep(0.1)
    assert state == "completed"
    assert seen_max_down <= 1, f"parallelism 1 but {seen_max_down} replicas were down at once"
    # old containers stop within their grace period (sleep as PID 1 ignores SIGTERM)
    c.wait_for(lambda: len(_containers(engine, **{SERVICE_LABEL: "up"})) == 4, 30, "old containers gone")
    envs = [ct.attrs["Config"]["Env"] for ct in _containers(engine, **{SERVICE_LABEL: "up"})]
    assert all("V=2" in e for e in envs)
    c.docker(m1, "service", "rm", "up")
