"""Controller behaviour that needs no engine: adoption from inspect output, ordering, and an
engine that is not there."""

import pytest

from swarmkit_py.engine import Engine
from swarmkit_py.store.objects import TaskState
from swarmkit_py.worker.executor import Controller, EngineUnavailable, InvalidTransition, connect
from tests.unit.test_executor_fixtures import assigned

SPEC = assigned("t1")
NO_ENGINE = "unix:///nonexistent/swarmkit-py-test.sock"


def adopted(state: dict, config: dict | None = None):
    container = {"Id": "c1", "State": state, "Config": config or {}}
    return Controller.adopt(None, SPEC, container).status()


def test_adopt_maps_container_state_to_task_state():
    assert adopted({"Status": "created"}).state == TaskState.READY
    running = adopted({"Status": "running", "Running": True, "Pid": 42})
    assert (running.state, running.container_status.pid, running.container_status.container_id) \
        == (TaskState.RUNNING, 42, "c1")
    assert adopted({"Status": "running", "Health": {"Status": "starting"}}).state == \
        TaskState.STARTING
    assert adopted({"Status": "exited", "ExitCode": 0}).state == TaskState.COMPLETE
    failed = adopted({"Status": "exited", "ExitCode": 5})
    assert (failed.state, failed.err, failed.container_status.exit_code) == \
        (TaskState.FAILED, "task: non-zero exit (5)", 5)


def test_new_controller_is_accepted():
    st = Controller(None, SPEC).status()
    assert (st.state, st.message, st.err, st.container_status) == \
        (TaskState.ACCEPTED, "accepted", None, None)


async def test_start_before_prepare_is_refused():
    with pytest.raises(InvalidTransition):
        await Controller(None, SPEC).start()


async def test_unreachable_engine_is_a_retryable_error():
    client = Engine(NO_ENGINE, version="1.41")  # as if it had answered once, then went away
    ctl = Controller(client, SPEC)
    with pytest.raises(EngineUnavailable) as info:
        await ctl.prepare()
    assert info.value.retryable
    assert "docker engine unavailable" in str(info.value)
    assert ctl.status().state == TaskState.PREPARING  # the step to retry, nothing decided


def test_connect_to_missing_engine_raises_engine_unavailable():
    with pytest.raises(EngineUnavailable, match="docker engine unavailable"):
        connect(NO_ENGINE)
