"""The worker's engine client (swarmkit_py/engine.py) against the machine's real Docker engine: the
log stream's frames (stdout and stderr apart, timestamps), a TTY's bytes, the engine's errors
by status, a container's exit on the events stream, and a stop that outlasts the call timeout.
Containers here carry a label unique to the test; teardown removes exactly those."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from swarmkit_py.engine import APIError, Conflict, Engine, NotFound
from swarmkit_py.taskimage import TASK_IMAGE
from swarmkit_py.worker.logs import demux, parse_line

pytestmark = pytest.mark.slow

LABEL = "com.swarmkit-py.test.engine-client"


@pytest.fixture
def engine(docker_engine):
    run = uuid.uuid4().hex[:12]
    client = Engine(timeout=10)
    client.run_label = run
    yield client
    for c in client.containers(all=True, filters={"label": f"{LABEL}={run}"}):
        client.remove_container(c["Id"], force=True)
    client.close()


def make(engine: Engine, script: str, tty: bool = False, start: bool = True) -> str:
    cid = engine.create_container(f"engine-test-{uuid.uuid4().hex[:12]}", {
        "Image": TASK_IMAGE, "Entrypoint": ["sh", "-c"], "Cmd": [script], "Tty": tty,
        "Labels": {LABEL: engine.run_label}})["Id"]
    if start:
        engine.start(cid)
    return cid


def wait_exited(engine: Engine, cid: str) -> dict:
    deadline = time.monotonic() + 20
    while (state := engine.inspect_container(cid)["State"])["Running"]:
        assert time.monotonic() < deadline, "the container did not exit"
        time.sleep(0.05)
    return state


def test_log_frames_keep_their_stream_and_timestamps(engine):
    cid = make(engine, "echo out 1; echo err 1 >&2; echo out 2; printf 'no newline'")
    wait_exited(engine, cid)
    stream = engine.logs(cid, {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": 1,
                               "tail": "all"})
    got = [(s, parse_line(d)) for s, d in demux(stream, tty=False)]
    stream.close()
    assert sorted((s, d) for s, (_ns, d) in got) == sorted([
        (1, b"out 1\n"), (2, b"err 1\n"), (1, b"out 2\n"), (1, b"no newline")])
    assert all(ns > 1_700_000_000 * 10**9 for _s, (ns, _d) in got)
    tty = make(engine, "echo a; echo b", tty=True)
    wait_exited(engine, tty)
    stream = engine.logs(tty, {"stdout": 1, "stderr": 1, "follow": 0, "tail": "all"})
    assert list(demux(stream, tty=True)) == [(1, b"a\r\n"), (1, b"b\r\n")]
    stream.close()


def test_the_engines_errors_by_status(engine):
    with pytest.raises(NotFound, match="No such container"):
        engine.inspect_container(f"no-such-{uuid.uuid4().hex}")
    with pytest.raises(NotFound):
        engine.inspect_image("swarmkit-py/nonexistent:1")
    name = f"engine-test-{uuid.uuid4().hex[:12]}"
    engine.create_container(name, {"Image": TASK_IMAGE, "Cmd": ["true"],
                                   "Labels": {LABEL: engine.run_label}})
    with pytest.raises(Conflict) as e:
        engine.create_container(name, {"Image": TASK_IMAGE, "Labels": {LABEL: engine.run_label}})
    assert e.value.status_code == 409 and "already in use" in e.value.explanation
    running = make(engine, "sleep 30")
    with pytest.raises(Conflict):
        engine.remove_container(running)  # running, and not forced
    with pytest.raises(APIError) as e:
        engine.create_container(f"engine-test-{uuid.uuid4().hex[:12]}", {
            "Image": TASK_IMAGE, "HostConfig": {"PortBindings": {"x/tcp": []}}})
    assert e.value.status_code == 400 and not isinstance(e.value, (NotFound, Conflict))


def test_an_exit_arrives_on_the_events_stream_and_a_stop_outlasts_the_call_timeout(engine):
    stream = engine.events({"type": "container", "event": ["die"],
                            "label": [f"{LABEL}={engine.run_label}"]})
    seen: list[dict] = []
    reader = threading.Thread(target=lambda: seen.extend(e for e in stream), daemon=True)
    reader.start()
    cid = make(engine, "exit 7")
    quick = Engine(timeout=1)  # the stop below takes longer than that: its own timeout is 1 + 2
    stubborn = make(engine, "sleep 30")  # sh as PID 1 ignores SIGTERM: killed after 2 s
    t0 = time.monotonic()
    quick.stop(stubborn, 2)
    assert 1.5 < time.monotonic() - t0 < 10
    assert wait_exited(engine, stubborn)["ExitCode"] == 137
    quick.close()
    deadline = time.monotonic() + 20
    while len(seen) < 2:
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    stream.close()
    reader.join(5)
    assert not reader.is_alive()
    codes = {e["Actor"]["ID"]: e["Actor"]["Attributes"]["exitCode"] for e in seen}
    assert codes == {cid: "7", stubborn: "137"}
