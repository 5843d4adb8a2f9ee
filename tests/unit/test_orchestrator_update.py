"""Update supervisor: parallelism, stop-first / start-first, delay, monitor-window failures
-> pause / rollback / continue, completion, manual rollback, leader change mid-update."""

from __future__ import annotations

import pytest

from swarmkit_py.manager.orchestrator import (
    NodeFailure,
    ReplicatedOrchestrator,
    RestartSupervisor,
    UpdateSupervisor,
    is_up_to_date,
)
from swarmkit_py.store import FailureAction, TaskState, UpdateOrder, UpdateState
from tests.unit.test_orchestrator_fixtures import Harness, settle, until, update_config

pytestmark = pytest.mark.asyncio
LOOPS = (ReplicatedOrchestrator, RestartSupervisor, NodeFailure, UpdateSupervisor)


async def running_service(replicas=5, update=None, rollback=None):
    h = Harness()
    for i in range(3):
        await h.add_node(f"n{i}")
    await h.start(*LOOPS)
    sid = await h.add_service("web", replicas, update=update, rollback=rollback)
    await until(lambda: len(h.runnable(sid)) == replicas)
    await h.work()
    assert len(h.running(sid)) == replicas
    return h, sid


def set_image(image):
    def fn(spec):
        spec.task_template.container_spec.image = image

    return fn


def status(h, sid):
    st = h.service(sid).update_status
    return (st.state, st.message) if st else None


def new_tasks(h, sid):
    return [t for t in h.tasks(sid) if is_up_to_date(t, h.service(sid))]


async def drive(h, sid, *, fail=lambda t: False, step=1.0, rounds=60, check=None):
    """Let the cluster work and time pass until the update is no longer in progress."""
    for _ in range(rounds):
        if check:
            check()
        await h.work(fail=fail)
        if check:
            check()
        st = h.service(sid).update_status
        if st is not None and st.state not in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
            return st
        await h.clock.advance(step)
    raise AssertionError(f"update still in progress: {status(h, sid)}")


@pytest.mark.parametrize("parallelism", [1, 2, 0])
async def test_parallelism_is_never_exceeded_and_update_completes(parallelism):
    h, sid = await running_service(5, update=update_config(parallelism=parallelism, monitor=2))
    await h.update_service(sid, set_image("busybox:2"))
    await until(lambda: status(h, sid) == (UpdateState.UPDATING, "update in progress"))
    assert h.service(sid).update_status.started_at is not None
    limit = parallelism or 5

    def check():
        # slots being replaced = new tasks that are not running yet
        in_flight = [t for t in new_tasks(h, sid) if t.status.state < TaskState.RUNNING]
        assert len(in_flight) <= limit

    st = await drive(h, sid, check=check)
    assert (st.state, st.message) == (UpdateState.COMPLETED, "update completed")
    assert st.completed_at is not None
    assert len(h.running(sid)) == 5 and all(is_up_to_date(t, h.service(sid)) for t in h.running(sid))
    sup = next(x for x in h.loops if isinstance(x, UpdateSupervisor))
    assert sup.rollouts == {} or all(r.max_in_flight <= limit for r in sup.rollouts.values())
    await h.stop()


async def test_completed_only_after_monitor_period():
    h, sid = await running_service(1, update=update_config(monitor=5))
    await h.update_service(sid, set_image("busybox:2"))
    await until(lambda: len(new_tasks(h, sid)) == 1)
    await h.work()
    await h.clock.advance(4)
    assert status(h, sid)[0] == UpdateState.UPDATING
    await h.clock.advance(1.5)
    await until(lambda: status(h, sid) == (UpdateState.COMPLETED, "update completed"))
    await h.stop()


async def test_stop_first_shuts_old_down_with_the_new_one_created():
    h, sid = await running_service(1, update=update_config(order=UpdateOrder.STOP_FIRST))
    (old,) = h.running(sid)
    await h.update_service(sid, set_image("busybox:2"))
    await until(lambda: len(new_tasks(h, sid)) == 1)
    assert h.view().get_task(old.id).desired_state == TaskState.SHUTDOWN
    assert len(h.runnable(sid)) == 1
    await h.stop()


async def test_start_first_keeps_old_running_until_new_runs():
    h, sid = await running_service(1, update=update_config(order=UpdateOrder.START_FIRST))
    (old,) = h.running(sid)
    await h.update_service(sid, set_image("busybox:2"))
    await until(lambda: len(new_tasks(h, sid)) == 1)
    await settle()
    assert h.view().get_task(old.id).desired_state == TaskState.RUNNING
    assert len(h.runnable(sid)) == 2  # both, for a moment
    await h.work()  # the new one starts
    await until(lambda: h.view().get_task(old.id).desired_state == TaskState.SHUTDOWN)
    assert [t.slot for t in h.runnable(sid)] == [1]
    await h.stop()


async def test_delay_between_batches():
    h, sid = await running_service(2, update=update_config(parallelism=1, delay=10, monitor=1))
    await h.update_service(sid, set_image("busybox:2"))
    await until(lambda: len(new_tasks(h, sid)) == 1)
    await h.work()
    await h.clock.advance(9)
    assert len(new_tasks(h, sid)) == 1
    await h.clock.advance(1.5)
    await until(lambda: len(new_tasks(h, sid)) == 2)
    await h.stop()


async def test_failure_in_monitor_window_pauses():
    h, sid = await running_service(3, update=update_config(monitor=5))
    await h.update_service(sid, set_image("busybox:bad"))
    st = await drive(h, sid, fail=lambda t: t.spec.container_spec.image == "busybox:bad")
    assert st.state == UpdateState.PAUSED
    assert st.message.startswith("update paused due to failure or early termination of task ")
    failed = st.message.rsplit(" ", 1)[1]
    assert h.view().get_task(failed).spec.container_spec.image == "busybox:bad"
    # paused: no further slots replaced, and it stays paused
    images = sorted(t.spec.container_spec.image for t in h.runnable(sid))
    await h.clock.advance(30)
    await h.work()
    assert status(h, sid)[0] == UpdateState.PAUSED
    assert sum(1 for i in images if i == "busybox:1") == 2
    await h.stop()


async def test_failure_after_the_monitor_window_does_not_count():
    h, sid = await running_service(1, update=update_config(monitor=2))
    await h.update_service(sid, set_image("busybox:2"))
    st = await drive(h, sid)
    assert st.state == UpdateState.COMPLETED
    (t,) = h.running(sid)
    await h.set_task(t.id, TaskState.FAILED)
    await h.clock.advance(1)
    assert status(h, sid)[0] == UpdateState.COMPLETED
    await h.stop()


async def test_failure_action_rollback_then_rollback_completed():
    h, sid = await running_service(
        3,
        update=update_config(failure_action=FailureAction.ROLLBACK, monitor=3),
        rollback=update_config(parallelism=0, monitor=1),
    )
    await h.update_service(sid, set_image("busybox:bad"))
    seen = []

    def check():
        s = status(h, sid)
        if s and (not seen or seen[-1] != s[0]):
            seen.append(s[0])

    for _ in range(40):
        check()
        await h.work(fail=lambda t: t.spec.container_spec.image == "busybox:bad")
        check()
        if status(h, sid)[0] == UpdateState.ROLLBACK_COMPLETED:
            break
        await h.clock.advance(1)
    assert seen[0] == UpdateState.UPDATING and UpdateState.ROLLBACK_STARTED in seen
    assert status(h, sid) == (UpdateState.ROLLBACK_COMPLETED, "rollback completed")
    svc = h.service(sid)
    assert svc.spec.task_template.container_spec.image == "busybox:1"
    assert svc.previous_spec is None
    assert len(h.running(sid)) == 3
    assert all(t.spec.container_spec.image == "busybox:1" for t in h.running(sid))
    await h.stop()


async def test_failure_action_continue_completes():
    h, sid = await running_service(2, update=update_config(failure_action=FailureAction.CONTINUE, monitor=1))
    await h.update_service(sid, set_image("busybox:2"))
    first = {"done": False}

    def fail(t):
        if t.spec.container_spec.image == "busybox:2" and not first["done"]:
            first["done"] = True
            return True
        return False

    st = await drive(h, sid, fail=fail)
    assert st.state == UpdateState.COMPLETED
    await h.stop()


async def test_max_failure_ratio_tolerates_failures():
    h, sid = await running_service(4, update=update_config(parallelism=0, max_failure_ratio=0.5, monitor=1))
    await h.update_service(sid, set_image("busybox:2"))
    bad = set()

    def fail(t):
        if t.spec.container_spec.image == "busybox:2" and t.slot == 1 and t.slot not in bad:
            bad.add(t.slot)
            return True
        return False

    st = await drive(h, sid, fail=fail)
    assert st.state == UpdateState.COMPLETED  # 1 of 4 failed: 0.25 <= 0.5
    await h.stop()


async def test_manual_rollback_uses_rollback_config_and_completes():
    h, sid = await running_service(3, update=update_config(monitor=1), rollback=update_config(parallelism=3, monitor=1))
    await h.update_service(sid, set_image("busybox:2"))
    st = await drive(h, sid)
    assert st.state == UpdateState.COMPLETED
    await h.manual_rollback(sid)
    assert status(h, sid) == (UpdateState.ROLLBACK_STARTED, "manually requested rollback")
    # rollback parallelism 3: all three replaced at once
    await until(lambda: sum(1 for t in h.runnable(sid) if t.spec.container_spec.image == "busybox:1") == 3)
    st = await drive(h, sid)
    assert (st.state, st.message) == (UpdateState.ROLLBACK_COMPLETED, "rollback completed")
    assert all(t.spec.container_spec.image == "busybox:1" for t in h.running(sid))
    await h.stop()


async def test_failing_rollback_pauses_instead_of_rolling_back_again():
    h, sid = await running_service(2, update=update_config(monitor=1), rollback=update_config(monitor=5))
    await h.update_service(sid, set_image("busybox:2"))
    assert (await drive(h, sid)).state == UpdateState.COMPLETED
    await h.manual_rollback(sid)
    st = await drive(h, sid, fail=lambda t: t.spec.container_spec.image == "busybox:1")
    assert st.state == UpdateState.ROLLBACK_PAUSED
    assert st.message.startswith("rollback paused due to failure or early termination of task ")
    await h.stop()


async def test_newer_spec_supersedes_running_update():
    h, sid = await running_service(3, update=update_config(monitor=1))
    await h.update_service(sid, set_image("busybox:2"))
    await until(lambda: len(new_tasks(h, sid)) == 1)
    await h.update_service(sid, set_image("busybox:3"))
    st = await drive(h, sid)
    assert st.state == UpdateState.COMPLETED
    assert sorted(t.spec.container_spec.image for t in h.running(sid)) == ["busybox:3"] * 3
    await h.stop()


async def test_leader_change_mid_update_finishes_it():
    h, sid = await running_service(3, update=update_config(monitor=1))
    await h.update_service(sid, set_image("busybox:2"))
    await until(lambda: len(new_tasks(h, sid)) == 1)
    await h.stop()
    await h.start(*LOOPS)
    st = await drive(h, sid)
    assert st.state == UpdateState.COMPLETED
    assert sorted(t.spec.container_spec.image for t in h.running(sid)) == ["busybox:2"] * 3
    await h.stop()
