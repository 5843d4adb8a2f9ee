"""Task reaper: history per slot (per node for global) trimmed to the cluster's retention
limit, never the live task nor a finished one holding its slot; removed tasks deleted."""

from __future__ import annotations

import pytest

from swarmkit_py.manager.orchestrator import (
    GlobalOrchestrator,
    ReplicatedOrchestrator,
    RestartSupervisor,
    TaskReaper,
)
from swarmkit_py.store import NodeState, RestartCondition, TaskState
from tests.unit.test_orchestrator_fixtures import Harness, restart, settle, until

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("limit,expected", [(None, 5), (3, 3), (1, 1)])
async def test_history_trimmed_per_slot(limit, expected):
    h = Harness(history_limit=limit)
    await h.add_node("n1")
    await h.start(ReplicatedOrchestrator, RestartSupervisor, TaskReaper)
    sid = await h.add_service("web", 2, restart=restart(delay=0))
    await until(lambda: len(h.runnable(sid)) == 2)
    await h.work()
    slot1 = next(t for t in h.running(sid) if t.slot == 1)
    ids = [slot1.id]
    for _ in range(8):
        await h.set_task(ids[-1], TaskState.FAILED)
        await until(lambda: any(t.slot == 1 and t.id not in ids for t in h.runnable(sid)))
        ids.append(next(t.id for t in h.runnable(sid) if t.slot == 1))
        await h.work()
    await settle()
    in_slot = [t for t in h.tasks(sid) if t.slot == 1]
    assert len(in_slot) == expected
    kept = {t.id for t in in_slot}
    assert ids[-1] in kept  # the live one
    assert kept == set(ids[-expected:])  # the newest history
    assert len([t for t in h.tasks(sid) if t.slot == 2]) == 1
    await h.stop()


async def test_finished_task_holding_its_slot_is_kept_even_with_limit_zero():
    h = Harness(history_limit=0)
    await h.add_node("n1")
    await h.start(ReplicatedOrchestrator, RestartSupervisor, TaskReaper)
    sid = await h.add_service("web", 1, restart=restart(condition=RestartCondition.NONE))
    await until(lambda: len(h.runnable(sid)) == 1)
    await h.work()
    (t,) = h.running(sid)
    await h.set_task(t.id, TaskState.COMPLETE)
    await h.clock.advance(1)
    assert [x.id for x in h.tasks(sid)] == [t.id]  # finished per policy: holds its slot, kept
    await h.stop()


async def test_global_history_is_per_node():
    h = Harness(history_limit=2)
    a = await h.add_node("a")
    await h.start(GlobalOrchestrator, RestartSupervisor, TaskReaper)
    sid = await h.add_service("agent", global_=True, restart=restart(delay=0))
    await until(lambda: len(h.runnable(sid)) == 1)
    for _ in range(4):
        await h.work()
        (t,) = h.running(sid)
        await h.set_task(t.id, TaskState.FAILED)
        await until(lambda t=t: h.view().get_task(t.id) is None or h.view().get_task(t.id).desired_state == TaskState.SHUTDOWN)
    await settle()
    assert len([t for t in h.tasks(sid) if t.node_id == a]) == 2
    await h.stop()


async def test_removed_tasks_on_a_down_node_are_deleted():
    h = Harness()
    a = await h.add_node("a")
    await h.start(ReplicatedOrchestrator, TaskReaper)
    sid = await h.add_service("web", 2)
    await until(lambda: len(h.runnable(sid)) == 2)
    await h.work()
    await h.set_node_state(a, NodeState.DOWN)
    await h.delete_service(sid)
    await until(lambda: h.tasks(sid) == [], what="nobody will report them stopped: deleted")
    await h.stop()
