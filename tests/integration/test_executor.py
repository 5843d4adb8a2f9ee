"""The executor against the machine's real Docker engine.

Every container here carries a node ID unique to the test, and teardown removes exactly those:
the engine is shared, and containers this test did not make are none of its business.
"""

import asyncio
import time
import urllib.request
import uuid

import docker.errors
import pytest

from swarmkit_py.proto import AssignedTask
from swarmkit_py.store.objects import TaskState
from swarmkit_py.taskimage import TASK_IMAGE, ensure_task_image
from swarmkit_py.worker.executor import Controller, connect, list_task_containers
from swarmkit_py.worker.executor.docker_adapter import LABEL_NODE_ID, LABEL_TASK_ID
from tests.unit.test_executor_fixtures import SECOND, assigned

pytestmark = pytest.mark.slow


@pytest.fixture
def engine(docker_engine):
    """The worker's own engine client (swarmkit_py/engine.py) for the controllers; the test looks
    at the outcome through the Docker SDK (`docker_engine`)."""
    client = connect()
    yield client
    client.close()


@pytest.fixture
def node_id(docker_engine):
    node = f"testnode-{uuid.uuid4().hex[:12]}"
    yield node
    for c in docker_engine.containers.list(all=True, filters={"label": f"{LABEL_NODE_ID}={node}"}):
        c.remove(force=True)


def spec(node_id: str, **kw) -> AssignedTask:
    """A task of service ``exectest`` running ``sh -c ARGS`` in the task image, with a one
    second stop grace period; ``kw`` as ``assigned`` takes them (Docker's spelling)."""
    fields = {
        "service_id": "svc-exec-test",
        "service_name": "exectest",
        "node_id": node_id,
        "Image": TASK_IMAGE,
        "Command": ["sh", "-c"],
        "StopGracePeriod": SECOND,
    }
    fields.update(kw)
    return assigned(**fields)


def cstatus(st):
    """(container id, pid, exit code) of a status, with the absent ones as "", 0, None."""
    cs = st.container_status
    if cs is None:
        return "", 0, None
    return cs.container_id or "", cs.pid or 0, cs.exit_code


async def until(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def run(client, s: AssignedTask) -> Controller:
    ctl = Controller(client, s)
    assert (await ctl.prepare()).state == TaskState.READY
    await ctl.start()
    return ctl


async def test_running_task_carries_swarm_name_and_labels(engine, docker_engine, node_id):
    s = spec(node_id, Args=["echo hi; sleep 30"], Labels={"team": "blue"})
    ctl = await run(engine, s)
    st = ctl.status()
    container_id, pid, exit_code = cstatus(st)
    assert (st.state, st.message, st.err) == (TaskState.RUNNING, "started", None)
    assert pid > 0 and exit_code is None

    found = docker_engine.containers.list(filters={"label": f"{LABEL_TASK_ID}={s.id}"})
    assert [c.id for c in found] == [container_id]
    c = found[0]
    assert c.name == f"exectest.1.{s.id}"
    assert c.labels == {
        "team": "blue",
        "com.docker.swarm.task": "",
        "com.docker.swarm.task.id": s.id,
        "com.docker.swarm.task.name": f"exectest.1.{s.id}",
        "com.docker.swarm.service.id": "svc-exec-test",
        "com.docker.swarm.service.name": "exectest",
        "com.docker.swarm.node.id": node_id,
    }
    await until(lambda: b"hi" in c.logs(), "the task's output")


async def test_global_task_is_named_after_its_node(engine, docker_engine, node_id):
    s = spec(node_id, slot=None, Args=["sleep 30"])
    ctl = await run(engine, s)
    c = docker_engine.containers.get(cstatus(ctl.status())[0])
    assert c.name == f"exectest.{node_id}.{s.id}"


async def test_shutdown_kills_after_grace_and_removes(engine, docker_engine, node_id):
    # `sh` as PID 1 ignores SIGTERM, so only the SIGKILL at the end of the grace period stops it.
    ctl = await run(engine, spec(node_id, Args=["sleep 30"], StopGracePeriod=SECOND))
    waiting = asyncio.create_task(ctl.wait())
    t0 = time.monotonic()
    st = await ctl.shutdown()
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 4, elapsed
    assert (st.state, st.err, cstatus(st)[2]) == (TaskState.SHUTDOWN, None, 137)
    assert (await asyncio.wait_for(waiting, 5)).state == TaskState.SHUTDOWN
    with pytest.raises(docker.errors.NotFound):
        docker_engine.containers.get(cstatus(st)[0])


async def test_shutdown_lets_a_task_exit_on_sigterm(engine, node_id):
    script = "trap 'exit 0' TERM; while true; do sleep 0.1; done"
    ctl = await run(engine, spec(node_id, Args=[script], StopGracePeriod=10 * SECOND))
    t0 = time.monotonic()
    st = await ctl.shutdown()
    assert time.monotonic() - t0 < 5
    assert (st.state, cstatus(st)[2]) == (TaskState.SHUTDOWN, 0)


async def test_exit_zero_completes(engine, node_id):
    ctl = await run(engine, spec(node_id, Args=["sleep 0.3; exit 0"]))
    st = await ctl.wait()
    assert (st.state, st.message, st.err, cstatus(st)[2]) == \
        (TaskState.COMPLETE, "finished", None, 0)
    await ctl.remove()
    assert list_task_containers(engine, node_id) == {}


async def test_non_zero_exit_fails_with_code(engine, node_id):
    ctl = await run(engine, spec(node_id, Args=["sleep 0.3; exit 3"]))
    st = await ctl.wait()
    assert (st.state, st.err, cstatus(st)[2]) == (TaskState.FAILED, "task: non-zero exit (3)", 3)


async def test_missing_image_is_rejected(engine, node_id):
    ctl = Controller(engine, spec(node_id, Image="swarmkit-py/nonexistent:1", Args=["true"]))
    st = await ctl.prepare()
    assert (st.state, st.err) == (TaskState.REJECTED, "No such image: swarmkit-py/nonexistent:1")
    assert st.container_status is None
    assert list_task_containers(engine, node_id) == {}


async def test_env_command_args_and_labels_applied(engine, docker_engine, node_id):
    s = spec(node_id, Command=["sh", "-c"], Args=['echo "FOO=$FOO"; sleep 30'],
             Env=["FOO=bar baz", "EMPTY="], Labels={"com.example.tier": "web"})
    ctl = await run(engine, s)
    c = docker_engine.containers.get(cstatus(ctl.status())[0])
    assert c.attrs["Config"]["Entrypoint"] == ["sh", "-c"]
    assert c.attrs["Config"]["Cmd"] == ['echo "FOO=$FOO"; sleep 30']
    assert {"FOO=bar baz", "EMPTY="} <= set(c.attrs["Config"]["Env"])
    assert c.labels["com.example.tier"] == "web"
    await until(lambda: b"FOO=bar baz" in c.logs(), "the environment in the task's output")


async def test_resource_limits_applied(engine, docker_engine, node_id):
    limit = 64 * 1024 * 1024
    s = spec(node_id, Args=["cat /sys/fs/cgroup/memory/memory.limit_in_bytes; sleep 30"],
             limits={"MemoryBytes": limit, "NanoCPUs": 500_000_000})
    ctl = await run(engine, s)
    c = docker_engine.containers.get(cstatus(ctl.status())[0])
    assert c.attrs["HostConfig"]["Memory"] == limit
    assert c.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    # The kernel enforces it, not just the engine's record (cgroup v1 on this machine).
    await until(lambda: str(limit).encode() in c.logs(), "the cgroup's memory limit")


async def test_running_only_once_healthy(engine, docker_engine, node_id):
    s = spec(node_id, Args=["sleep 1; touch /tmp/ready; sleep 30"],
             Healthcheck={"Test": ["CMD-SHELL", "test -f /tmp/ready"], "Interval": SECOND // 5,
                          "Retries": 50})
    ctl = Controller(engine, s)
    await ctl.prepare()
    t0 = time.monotonic()
    st = await ctl.start()
    assert st.state == TaskState.RUNNING
    assert time.monotonic() - t0 >= 0.9
    c = docker_engine.containers.get(cstatus(st)[0])
    assert c.attrs["State"]["Health"]["Status"] == "healthy"


async def test_unhealthy_task_fails_and_is_stopped(engine, docker_engine, node_id):
    s = spec(node_id, Args=["sleep 30"],
             Healthcheck={"Test": ["CMD", "false"], "Interval": SECOND // 10, "Retries": 1})
    ctl = Controller(engine, s)
    await ctl.prepare()
    st = await ctl.start()
    assert (st.state, st.err) == (TaskState.FAILED, "unhealthy container")
    assert docker_engine.containers.get(cstatus(st)[0]).status == "exited"


async def test_host_mode_published_port(engine, docker_engine, node_id):
    s = spec(node_id, Args=["echo served > /www/index.html; exec httpd -f -p 80 -h /www"],
             ports=[{"TargetPort": 80, "PublishMode": "host"}])
    ctl = await run(engine, s)
    c = docker_engine.containers.get(cstatus(ctl.status())[0])
    binding = c.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]
    assert binding["HostIp"] in ("0.0.0.0", "")  # every address of the host, as Swarm's mode=host
    url = f"http://127.0.0.1:{binding['HostPort']}/"

    def fetch():
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.read()
        except OSError:
            return None

    assert await until(fetch, f"httpd at {url}") == b"served\n"


async def test_adoption_lists_this_nodes_task_containers(engine, docker_engine, node_id, request):
    running = spec(node_id, Args=["sleep 30"])
    done = spec(node_id, Args=["exit 2"], slot=2)
    await run(engine, running)
    await (await run(engine, done)).wait()
    other_node = f"{node_id}-other"
    request.addfinalizer(lambda: [c.remove(force=True) for c in docker_engine.containers.list(
        all=True, filters={"label": f"{LABEL_NODE_ID}={other_node}"})])
    await run(engine, spec(other_node, Args=["sleep 30"]))

    found = list_task_containers(engine, node_id)
    assert set(found) == {running.id, done.id}

    # A restarted worker takes over where the old one left off.
    adopted = Controller.adopt(engine, running, found[running.id])
    st = adopted.status()
    assert (st.state, cstatus(st)[0]) == (TaskState.RUNNING, found[running.id]["Id"])
    assert cstatus(st)[1] > 0
    finished = Controller.adopt(engine, done, found[done.id]).status()
    assert (finished.state, cstatus(finished)[2]) == (TaskState.FAILED, 2)
    assert (await adopted.shutdown(grace=0)).state == TaskState.SHUTDOWN
    assert set(list_task_containers(engine, node_id)) == {done.id}


def test_task_image_import_is_idempotent(docker_engine, engine):
    image_id = docker_engine.images.get(TASK_IMAGE).id
    assert ensure_task_image(engine) == image_id
