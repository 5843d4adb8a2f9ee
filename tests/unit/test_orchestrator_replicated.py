"""Replicated orchestrator: slots 1..N, scale up/down in one transaction, service removal."""

from __future__ import annotations

import pytest

from swarmkit_py.manager.orchestrator import (
    ReplicatedOrchestrator,
    TaskReaper,
    UpdateSupervisor,
    is_up_to_date,
)
from swarmkit_py.store import TaskState
from tests.unit.test_orchestrator_fixtures import Harness, settle, until

pytestmark = pytest.mark.asyncio


def slots(h, sid):
    return sorted(t.slot for t in h.runnable(sid))


async def test_creates_one_pending_task_per_slot_named_like_swarm():
    h = Harness()
    await h.start(ReplicatedOrchestrator)
    sid = await h.add_service("web", 3)
    await until(lambda: len(h.runnable(sid)) == 3)
    ts = sorted(h.runnable(sid), key=lambda t: t.slot)
    assert [t.slot for t in ts] == [1, 2, 3]
    assert [t.name for t in ts] == ["web.1", "web.2", "web.3"]
    for t in ts:
        assert t.status.state == TaskState.PENDING and t.desired_state == TaskState.RUNNING
        assert t.node_id is None
        assert is_up_to_date(t, h.service(sid))
    await h.stop()


async def _web_of_three_running():
    """A harness with one node, the replicated orchestrator and `web` (3 replicas) running."""
    h = Harness()
    await h.add_node("n1")
    await h.start(ReplicatedOrchestrator)
    sid = await h.add_service("web", 3)
    await until(lambda: slots(h, sid) == [1, 2, 3])
    await h.work()
    return h, sid


async def test_scale_up_and_down_keeps_slots_unique_and_contiguous():
    h, sid = await _web_of_three_running()
    for n in (6, 2, 5, 0, 4):
        await h.scale(sid, n)
        await until(lambda n=n: slots(h, sid) == list(range(1, n + 1)), what=f"slots 1..{n}")
        await h.work()
        # Stopped tasks of removed slots stay as history with desired shutdown.
        for t in h.tasks(sid):
            if t.slot > n:
                assert t.desired_state >= TaskState.SHUTDOWN
    await h.stop()


async def test_a_big_scale_is_a_few_bounded_proposals_not_one_per_task():
    h = Harness()
    await h.start(ReplicatedOrchestrator)
    sid = await h.add_service("web", 1)
    await until(lambda: len(h.runnable(sid)) == 1)
    before = len(h.proposer.sizes)
    await h.scale(sid, 1000)
    await until(lambda: len(h.runnable(sid)) == 1000)
    await settle()
    sizes = [s for s in h.proposer.sizes[before:] if s]
    budget = ReplicatedOrchestrator.create_budget
    assert sum(sizes) == 999 and max(sizes) == budget and len(sizes) == -(-999 // budget), sizes
    await h.stop()


async def test_service_removal_marks_tasks_remove_and_the_reaper_deletes_them_once_stopped():
    h = Harness()
    await h.add_node("n1")
    await h.start(ReplicatedOrchestrator, TaskReaper)
    sid = await h.add_service("web", 3)
    await until(lambda: len(h.runnable(sid)) == 3)
    await h.work()
    await h.delete_service(sid)
    await until(lambda: all(t.desired_state == TaskState.REMOVE for t in h.tasks(sid)))
    assert len(h.tasks(sid)) == 3  # still running: not deleted yet
    await h.work()  # workers stop them
    await until(lambda: h.tasks(sid) == [], what="tasks deleted")
    await h.stop()


async def test_removal_found_after_a_leader_change():
    h = Harness()
    await h.start(ReplicatedOrchestrator)
    sid = await h.add_service("web", 2)
    await until(lambda: len(h.runnable(sid)) == 2)
    await h.stop()
    await h.delete_service(sid)  # while no leader loop ran
    await h.start(ReplicatedOrchestrator)
    await until(lambda: all(t.desired_state == TaskState.REMOVE for t in h.tasks(sid)))
    await h.stop()


async def test_pure_scale_does_not_start_an_update():
    h = Harness()
    await h.add_node("n1")
    await h.start(ReplicatedOrchestrator, UpdateSupervisor)
    sid = await h.add_service("web", 2)
    await until(lambda: len(h.runnable(sid)) == 2)
    await h.work()
    await h.scale(sid, 5)
    await until(lambda: len(h.runnable(sid)) == 5)
    await h.work()
    await h.clock.advance(10)
    assert h.service(sid).update_status is None
    assert all(is_up_to_date(t, h.service(sid)) for t in h.tasks(sid))
    assert len(h.tasks(sid)) == 5  # nothing was replaced
    await h.stop()


async def test_refills_a_slot_whose_task_stopped_holding_it():
    h = Harness()
    await h.start(ReplicatedOrchestrator)
    sid = await h.add_service("web", 2)
    await until(lambda: len(h.runnable(sid)) == 2)
    victim = h.runnable(sid)[0]
    c = victim.clone()
    c.desired_state = TaskState.SHUTDOWN
    await h.write(c)
    await until(lambda: slots(h, sid) == [1, 2])
    assert victim.id not in {t.id for t in h.runnable(sid)}
    await h.stop()


class SmallBatches(ReplicatedOrchestrator):
    """The production limits scaled down, so a 'huge' count stays quick to test."""

    create_budget = 100
    starting_window = 250


async def test_a_huge_count_fills_in_bounded_batches_at_the_pace_tasks_start():
    h = Harness()
    await h.add_node("n1")
    await h.start(SmallBatches)
    before = len(h.proposer.sizes)
    sid = await h.add_service("typo", 1000)
    await until(lambda: len(h.runnable(sid)) == 250, what="the first window")
    await settle()
    # nothing runs yet: the window is full, the orchestrator waits instead of creating more
    assert len(h.runnable(sid)) == 250
    assert slots(h, sid) == list(range(1, 251))  # lowest slots first: progress in order
    assert max(h.proposer.sizes[before:]) <= 100, h.proposer.sizes[before:]
    rounds = 0
    while len(h.running(sid)) < 1000:
        rounds += 1
        assert rounds < 20, f"stuck at {len(h.running(sid))} running"
        await h.work()  # the node starts what it was given; the next batches follow
        await settle()
    assert slots(h, sid) == list(range(1, 1001))
    assert max(h.proposer.sizes[before:]) <= 100
    await h.stop()


async def _run_first(h, sid, n):
    """The node starts the n lowest-slot tasks still on their way."""
    from swarmkit_py.store import Transaction

    tx = Transaction(h.clock())
    waiting = sorted((t for t in h.runnable(sid) if t.status.state < TaskState.RUNNING), key=lambda t: t.slot)
    for t in waiting[:n]:
        c = t.clone()
        c.node_id = c.node_id or "n1"
        c.status.state = TaskState.RUNNING
        tx.update(c)
    h._apply(tx)
    await settle()


async def test_a_throttled_fill_goes_on_once_a_tenth_of_its_window_started():
    """Not a pass over the whole service per started task: the next batch is created once
    resume_after (a tenth of the window) of the tasks on their way have started."""
    h = Harness()
    await h.add_node("n1")
    await h.start(SmallBatches)
    sid = await h.add_service("typo", 1000)
    await until(lambda: len(h.runnable(sid)) == 250, what="the first window")
    await settle()
    orch = h.loops[0]
    assert orch.resume_after == 25
    looked = []
    real = orch._service
    orch._service = lambda view, batch, svc: (looked.append(svc.id), real(view, batch, svc))
    for _ in range(24):
        await _run_first(h, sid, 1)
    assert len(h.runnable(sid)) == 250  # 24 started: not yet
    assert looked == []  # and no pass went over the service's tasks
    await _run_first(h, sid, 1)
    await until(lambda: len(h.runnable(sid)) == 275, what="room for the 25 that started")
    await settle()
    assert len(h.runnable(sid)) == 275
    await h.stop()


async def test_a_task_made_in_a_slot_the_service_no_longer_has_is_stopped():
    """Another loop's replacement landing after a scale-down removed its slot (a race): its
    creation alone makes the replicated orchestrator look, and stop it."""
    h, sid = await _web_of_three_running()
    await h.scale(sid, 2)
    await until(lambda: slots(h, sid) == [1, 2], what="slot 3 stopped")
    late = h.tasks(sid)[0].clone()
    late.id, late.slot, late.desired_state = "late-replacement", 3, TaskState.RUNNING
    await h.write(late, create=True)
    await until(lambda: h.view().get_task("late-replacement").desired_state == TaskState.SHUTDOWN,
                what="the late task in slot 3 stopped")
    assert slots(h, sid) == [1, 2]
    await h.stop()


async def test_removing_a_service_mid_fill_stops_the_fill_in_bounded_batches():
    h = Harness()
    await h.add_node("n1")
    await h.start(SmallBatches)
    sid = await h.add_service("typo", 100_000)
    await until(lambda: len(h.runnable(sid)) == 250)
    await h.work()
    await until(lambda: len(h.runnable(sid)) == 500, what="the second window")
    before = len(h.proposer.sizes)
    await h.delete_service(sid)
    await until(lambda: all(t.desired_state == TaskState.REMOVE for t in h.tasks(sid)),
                what="every task marked remove")
    await settle()
    assert len(h.tasks(sid)) <= 500  # no task created after the removal
    assert max(h.proposer.sizes[before:]) <= 100, h.proposer.sizes[before:]
    await h.stop()
