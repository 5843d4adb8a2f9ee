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

from swarmkit_py.worker.executor import (
    Controller,
    TaskSpec,
    TaskState,
    list_task_containers,
)
from swarmkit_py.worker.executor.docker_adapter import LABEL_NODE_ID, LABEL_TASK_ID
from swarmkit_py.worker.image import TASK_IMAGE, ensure_task_image

pytestmark = pytest.mark.slow


@pytest.fixture
def node_id(docker_engine):
    node = f"testnode-{uuid.uuid4().hex[:12]}"
    yield node
    for c in docker_engine.containers.list(all=True, filters={"label": f"{LABEL_NODE_ID}={node}"}):
        c.remove(force=True)


def spec(node_id: str, **kw) -> TaskSpec:
    fields = {
        "task_id": uuid.uuid4().hex[:25],
        "service_id": "svc-exec-test",
        "service_name": "exectest",
        "slot": 1,
        "node_id": node_id,
        "image": TASK_IMAGE,
        "command": ["sh", "-c"],
        "stop_grace_period": 1,
    }
    fields.update(kw)
    return TaskSpec.from_dict(fields)


async def until(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def run(client, s: TaskSpec) -> Controller:
    ctl = Controller(client, s)
    assert (await ctl.prepare()).state == TaskState.READY
    await ctl.start()
    return ctl


async def test_running_task_carries_swarm_name_and_labels(docker_engine, node_id):
    s = spec(node_id, args=["echo hi; sleep 30"], labels={"team": "blue"})
    ctl = await run(docker_engine, s)
    st = ctl.status()
    assert (st.state, st.message, st.err) == (TaskState.RUNNING, "started", "")
    assert st.pid > 0 and st.exit_code is None

    found = docker_engine.containers.list(filters={"label": f"{LABEL_TASK_ID}={s.task_id}"})
    assert [c.id for c in found] == [st.container_id]
    c = found[0]
    assert c.name == f"exectest.1.{s.task_id}"
    assert c.labels == {
        "team": "blue",
        "com.docker.swarm.task": "",
        "com.docker.swarm.task.id": s.task_id,
        "com.docker.swarm.task.name": f"exectest.1.{s.task_id}",
        "com.docker.swarm.service.id": "svc-exec-test",
        "com.docker.swarm.service.name": "exectest",
        "com.docker.swarm.node.id": node_id,
    }
    await until(lambda: b"hi" in c.logs(), "the task's output")


async def test_global_task_is_named_after_its_node(docker_engine, node_id):
    s = spec(node_id, slot=None, args=["sleep 30"])
    ctl = await run(docker_engine, s)
    c = docker_engine.containers.get(ctl.status().container_id)
    assert c.name == f"exectest.{node_id}.{s.task_id}"


async def test_shutdown_kills_after_grace_and_removes(docker_engine, node_id):
    # `sh` as PID 1 ignores SIGTERM, so only the SIGKILL at the end of the grace period stops it.
    ctl = await run(docker_engine, spec(node_id, args=["sleep 30"], stop_grace_period=1))
    waiting = asyncio.create_task(ctl.wait())
    t0 = time.monotonic()
    st = await ctl.shutdown()
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 4, elapsed
    assert (st.state, st.err, st.exit_code) == (TaskState.SHUTDOWN, "", 137)
    assert (await asyncio.wait_for(waiting, 5)).state == TaskState.SHUTDOWN
    with pytest.raises(docker.errors.NotFound):
        docker_engine.containers.get(st.container_id)


async def test_shutdown_lets_a_task_exit_on_sigterm(docker_engine, node_id):
    script = "trap 'exit 0' TERM; while true; do sleep 0.1; done"
    ctl = await run(docker_engine, spec(node_id, args=[script], stop_grace_period=10))
    t0 = time.monotonic()
    st = await ctl.shutdown()
    assert time.monotonic() - t0 < 5
    assert (st.state, st.exit_code) == (TaskState.SHUTDOWN, 0)


async def test_exit_zero_completes(docker_engine, node_id):
    ctl = await run(docker_engine, spec(node_id, args=["sleep 0.3; exit 0"]))
    st = await ctl.wait()
    assert (st.state, st.message, st.err, st.exit_code) == (TaskState.COMPLETE, "finished", "", 0)
    await ctl.remove()
    assert list_task_containers(docker_engine, node_id) == {}


async def test_non_zero_exit_fails_with_code(docker_engine, node_id):
    ctl = await run(docker_engine, spec(node_id, args=["sleep 0.3; exit 3"]))
    st = await ctl.wait()
    assert (st.state, st.err, st.exit_code) == (TaskState.FAILED, "task: non-zero exit (3)", 3)


async def test_missing_image_is_rejected(docker_engine, node_id):
    ctl = Controller(docker_engine, spec(node_id, image="swarmkit-py/nonexistent:1", args=["true"]))
    st = await ctl.prepare()
    assert (st.state, st.err) == (TaskState.REJECTED, "No such image: swarmkit-py/nonexistent:1")
    assert st.container_id == ""
    assert list_task_containers(docker_engine, node_id) == {}


async def test_env_command_args_and_labels_applied(docker_engine, node_id):
    s = spec(node_id, command=["sh", "-c"], args=['echo "FOO=$FOO"; sleep 30'],
             env={"FOO": "bar baz", "EMPTY": ""}, labels={"com.example.tier": "web"})
    ctl = await run(docker_engine, s)
    c = docker_engine.containers.get(ctl.status().container_id)
    assert c.attrs["Config"]["Entrypoint"] == ["sh", "-c"]
    assert c.attrs["Config"]["Cmd"] == ['echo "FOO=$FOO"; sleep 30']
    assert {"FOO=bar baz", "EMPTY="} <= set(c.attrs["Config"]["Env"])
    assert c.labels["com.example.tier"] == "web"
    await until(lambda: b"FOO=bar baz" in c.logs(), "the environment in the task's output")


async def test_resource_limits_applied(docker_engine, node_id):
    limit = 64 * 1024 * 1024
    s = spec(node_id, args=["cat /sys/fs/cgroup/memory/memory.limit_in_bytes; sleep 30"],
             resources={"memory_bytes": limit, "nano_cpus": 500_000_000})
    ctl = await run(docker_engine, s)
    c = docker_engine.containers.get(ctl.status().container_id)
    assert c.attrs["HostConfig"]["Memory"] == limit
    assert c.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    # The kernel enforces it, not just the engine's record (cgroup v1 on this machine).
    await until(lambda: str(limit).encode() in c.logs(), "the cgroup's memory limit")


async def test_running_only_once_healthy(docker_engine, node_id):
    s = spec(node_id, args=["sleep 1; touch /tmp/ready; sleep 30"],
             healthcheck={"test": "test -f /tmp/ready", "interval": 0.2, "retries": 50})
    ctl = Controller(docker_engine, s)
    await ctl.prepare()
    t0 = time.monotonic()
    st = await ctl.start()
    assert st.state == TaskState.RUNNING
    assert time.monotonic() - t0 >= 0.9
    c = docker_engine.containers.get(st.container_id)
    assert c.attrs["State"]["Health"]["Status"] == "healthy"


async def test_unhealthy_task_fails_and_is_stopped(docker_engine, node_id):
    s = spec(node_id, args=["sleep 30"],
             healthcheck={"test": ["CMD", "false"], "interval": 0.1, "retries": 1})
    ctl = Controller(docker_engine, s)
    await ctl.prepare()
    st = await ctl.start()
    assert (st.state, st.err) == (TaskState.FAILED, "unhealthy container")
    assert docker_engine.containers.get(st.container_id).status == "exited"


async def test_host_mode_published_port(docker_engine, node_id):
    s = spec(node_id, args=["echo served > /www/index.html; exec httpd -f -p 80 -h /www"],
             ports=[{"target_port": 80, "host_ip": "127.0.0.1"}])
    ctl = await run(docker_engine, s)
    c = docker_engine.containers.get(ctl.status().container_id)
    binding = c.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1"
    url = f"http://127.0.0.1:{binding['HostPort']}/"

    def fetch():
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.read()
        except OSError:
            return None

    assert await until(fetch, f"httpd at {url}") == b"served\n"


async def test_adoption_lists_this_nodes_task_containers(docker_engine, node_id, request):
    running = spec(node_id, args=["sleep 30"])
    done = spec(node_id, args=["exit 2"], slot=2)
    await run(docker_engine, running)
    await (await run(docker_engine, done)).wait()
    other_node = f"{node_id}-other"
    request.addfinalizer(lambda: [c.remove(force=True) for c in docker_engine.containers.list(
        all=True, filters={"label": f"{LABEL_NODE_ID}={other_node}"})])
    await run(docker_engine, spec(other_node, args=["sleep 30"]))

    found = list_task_containers(docker_engine, node_id)
    assert set(found) == {running.task_id, done.task_id}

    # A restarted worker takes over where the old one left off.
    adopted = Controller.adopt(docker_engine, running, found[running.task_id])
    st = adopted.status()
    assert (st.state, st.container_id) == (TaskState.RUNNING, found[running.task_id].id)
    assert st.pid > 0
    finished = Controller.adopt(docker_engine, done, found[done.task_id]).status()
    assert (finished.state, finished.exit_code) == (TaskState.FAILED, 2)
    assert (await adopted.shutdown(grace=0)).state == TaskState.SHUTDOWN
    assert set(list_task_containers(docker_engine, node_id)) == {done.task_id}


def test_task_image_import_is_idempotent(docker_engine):
    image_id = docker_engine.images.get(TASK_IMAGE).id
    assert ensure_task_image(docker_engine) == image_id
