"""Restart supervisor: conditions, delay (without blocking other work), max attempts within a
window, and no restart after a leader change for a policy that said no."""

from __future__ import annotations

import pytest

from swarmkit_py.manager.orchestrator import ReplicatedOrchestrator, RestartSupervisor
from swarmkit_py.store import RestartCondition, TaskState
from tests.unit.test_orchestrator_fixtures import Harness, restart, settle, until

pytestmark = pytest.mark.asyncio


async def setup(policy, replicas=1):
    h = Harness()
    await h.add_node("n1")
    await h.start(ReplicatedOrchestrator, RestartSupervisor)
    sid = await h.add_service("web", replicas, restart=policy)
    await until(lambda: len(h.runnable(sid)) == replicas)
    await h.work()
    return h, sid


def slot_tasks(h, sid, slot=1):
    return [t for t in h.tasks(sid) if t.slot == slot]


async def test_default_policy_restarts_after_5s_in_the_same_slot():
    h, sid = await setup(None)
    (t,) = h.running(sid)
    await h.set_task(t.id, TaskState.FAILED)
    await h.clock.advance(4.9)
    assert [x.id for x in h.runnable(sid)] == [t.id]  # still holding its slot during the delay
    await h.clock.advance(0.2)
    await until(lambda: len(slot_tasks(h, sid)) == 2)
    old = h.view().get_task(t.id)
    assert old.desired_state == TaskState.SHUTDOWN
    (new,) = h.runnable(sid)
    assert new.slot == 1 and new.name == "web.1" and new.status.state == TaskState.PENDING
    await h.stop()


async def test_delay_does_not_block_other_slots():
    h, sid = await setup(restart(delay=10), replicas=2)
    a, b = sorted(h.running(sid), key=lambda t: t.slot)
    await h.set_task(a.id, TaskState.FAILED)
    await h.clock.advance(5)
    await h.set_task(b.id, TaskState.COMPLETE)
    await h.clock.advance(5.1)
    await until(lambda: len(slot_tasks(h, sid, 1)) == 2, what="slot 1 restarted")
    assert len(slot_tasks(h, sid, 2)) == 1
    await h.clock.advance(5)
    await until(lambda: len(slot_tasks(h, sid, 2)) == 2, what="slot 2 restarted")
    await h.stop()


@pytest.mark.parametrize(
    "condition,state,restarts",
    [
        (RestartCondition.NONE, TaskState.FAILED, False),
        (RestartCondition.NONE, TaskState.COMPLETE, False),
        (RestartCondition.ON_FAILURE, TaskState.COMPLETE, False),
        (RestartCondition.ON_FAILURE, TaskState.FAILED, True),
        (RestartCondition.ON_FAILURE, TaskState.REJECTED, True),
        (RestartCondition.ANY, TaskState.COMPLETE, True),
        (RestartCondition.ANY, TaskState.SHUTDOWN, True),
    ],
)
async def test_conditions(condition, state, restarts):
    h, sid = await setup(restart(condition=condition, delay=0))
    (t,) = h.running(sid)
    await h.set_task(t.id, state)
    await settle()
    await h.clock.advance(1)
    tasks = slot_tasks(h, sid)
    if restarts:
        assert len(tasks) == 2
    else:
        assert len(tasks) == 1
        assert tasks[0].desired_state == TaskState.COMPLETE  # finished: keeps its slot
    await h.stop()


async def test_no_restart_survives_a_leader_change_and_a_scale():
    h, sid = await setup(restart(condition=RestartCondition.NONE))
    (t,) = h.running(sid)
    await h.set_task(t.id, TaskState.COMPLETE)
    await until(lambda: h.view().get_task(t.id).desired_state == TaskState.COMPLETE)
    await h.stop()
    await h.start(ReplicatedOrchestrator, RestartSupervisor)
    await h.scale(sid, 2)
    await until(lambda: len(h.runnable(sid)) == 1)
    await h.clock.advance(10)
    assert len(slot_tasks(h, sid, 1)) == 1  # slot 1 was not resurrected
    await h.stop()


async def test_max_attempts_without_window():
    h, sid = await setup(restart(delay=0, max_attempts=2))
    for _ in range(2):
        (t,) = h.running(sid)
        await h.set_task(t.id, TaskState.FAILED)
        await until(lambda t=t: h.view().get_task(t.id).desired_state == TaskState.SHUTDOWN)
        await h.work()
    (t,) = h.running(sid)
    await h.set_task(t.id, TaskState.FAILED)
    await until(lambda: h.view().get_task(t.id).desired_state == TaskState.COMPLETE, what="given up")
    assert len(slot_tasks(h, sid)) == 3
    await h.stop()


async def test_max_attempts_within_window():
    h, sid = await setup(restart(delay=0, max_attempts=1, window=60))
    (t,) = h.running(sid)
    await h.set_task(t.id, TaskState.FAILED)
    await until(lambda: len(slot_tasks(h, sid)) == 2)
    await h.work()
    await h.clock.advance(30)
    (t2,) = h.running(sid)
    await h.set_task(t2.id, TaskState.FAILED)  # second failure inside the window: no restart
    await until(lambda: h.view().get_task(t2.id).desired_state == TaskState.COMPLETE)
    assert len(slot_tasks(h, sid)) == 2
    await h.stop()


async def test_window_expiry_allows_restarts_again():
    h, sid = await setup(restart(delay=0, max_attempts=1, window=60))
    (t,) = h.running(sid)
    await h.set_task(t.id, TaskState.FAILED)
    await until(lambda: len(slot_tasks(h, sid)) == 2)
    await h.work()
    await h.clock.advance(61)
    (t2,) = h.running(sid)
    await h.set_task(t2.id, TaskState.FAILED)
    await until(lambda: len(slot_tasks(h, sid)) == 3, what="restart after the window")
    await h.stop()


async def test_delay_counts_from_the_failure_across_a_leader_change():
    h, sid = await setup(restart(delay=10))
    (t,) = h.running(sid)
    await h.set_task(t.id, TaskState.FAILED)
    await h.clock.advance(6)
    await h.stop()
    await h.start(ReplicatedOrchestrator, RestartSupervisor)
    await h.clock.advance(4.5)
    await until(lambda: len(slot_tasks(h, sid)) == 2, what="restart 10 s after the failure, not 16")
    await h.stop()
