"""Node failure: down nodes' tasks are replaced at once; unknown nodes after a leader change
are left alone; a returning node's tasks stay shut down; orphaning after a long outage."""

from __future__ import annotations

import pytest

from swarmkit_py.manager.orchestrator import (
    NodeFailure,
    ReplicatedOrchestrator,
    RestartSupervisor,
    TaskReaper,
)
from swarmkit_py.store import NodeState, TaskState, Transaction
from tests.unit.test_orchestrator_fixtures import Harness, settle, until

pytestmark = pytest.mark.asyncio
LOOPS = (ReplicatedOrchestrator, RestartSupervisor, NodeFailure)


async def cluster(replicas=6, nodes=3, **extra):
    h = Harness()
    ids = [await h.add_node(f"n{i}") for i in range(nodes)]
    await h.start(*LOOPS, **extra)
    sid = await h.add_service("web", replicas)
    await until(lambda: len(h.runnable(sid)) == replicas)
    await h.work()
    assert len(h.running(sid)) == replicas
    return h, sid, ids


async def test_down_node_tasks_replaced_immediately_others_untouched():
    h, sid, (a, b, c) = await cluster()
    on_a = {t.id for t in h.running(sid) if t.node_id == a}
    healthy = {t.id: t.version.index for t in h.running(sid) if t.node_id != a}
    assert on_a
    await h.set_node_state(a, NodeState.DOWN)
    # No clock advance at all: no restart delay for a dead host.
    await until(lambda: all(h.view().get_task(i).desired_state == TaskState.SHUTDOWN for i in on_a))
    runnable = h.runnable(sid)
    assert sorted(t.slot for t in runnable) == [1, 2, 3, 4, 5, 6]
    assert not on_a & {t.id for t in runnable}
    for tid, version in healthy.items():
        assert h.view().get_task(tid).version.index == version  # not even rewritten
    await h.work()
    assert len(h.running(sid)) == 6 and all(t.node_id != a for t in h.running(sid))
    await h.stop()


async def test_node_back_keeps_old_tasks_shut_down_and_replicas_never_exceed():
    h, sid, (a, b, c) = await cluster()
    on_a = {t.id for t in h.running(sid) if t.node_id == a}
    await h.set_node_state(a, NodeState.DOWN)
    await until(lambda: len(h.runnable(sid)) == 6 and not on_a & {t.id for t in h.runnable(sid)})
    await h.work()
    await h.set_node_state(a, NodeState.READY)
    for tid in on_a:  # the returning worker reports its stale containers as still running
        await h.set_task(tid, TaskState.RUNNING)
    await settle()
    await h.clock.advance(10)
    assert all(h.view().get_task(i).desired_state == TaskState.SHUTDOWN for i in on_a)
    assert len(h.runnable(sid)) == 6
    await h.work()  # the worker stops them
    assert all(h.view().get_task(i).status.state == TaskState.SHUTDOWN for i in on_a)
    assert len([t for t in h.tasks(sid) if t.status.state == TaskState.RUNNING]) == 6
    await h.stop()


async def test_leader_change_with_unknown_nodes_reschedules_nothing():
    h, sid, nodes = await cluster()
    await h.stop()
    for n in nodes:  # a new leader that has not heard from anybody yet
        await h.set_node_state(n, NodeState.UNKNOWN)
    before = {t.id: t.version.index for t in h.tasks(sid)}
    await h.start(*LOOPS, TaskReaper)
    await h.clock.advance(60)
    await settle()
    after = {t.id: t.version.index for t in h.tasks(sid)}
    assert after == before
    # and once the dispatcher gives its verdict on one of them, only that one moves
    await h.set_node_state(nodes[0], NodeState.DOWN)
    await until(lambda: sum(1 for t in h.tasks(sid) if t.id not in before) == 2)
    moved = {tid for tid in before if h.view().get_task(tid).desired_state == TaskState.SHUTDOWN}
    assert moved == {tid for tid in before if h.view().get_task(tid).node_id == nodes[0]}
    await h.stop()


async def test_removed_node_is_treated_as_dead():
    h, sid, (a, b, c) = await cluster()
    on_a = {t.id for t in h.running(sid) if t.node_id == a}
    h._apply(Transaction(h.clock()).delete("node", a))
    await until(lambda: all(h.view().get_task(i).desired_state == TaskState.SHUTDOWN for i in on_a))
    assert len(h.runnable(sid)) == 6
    await h.stop()


async def test_tasks_of_long_dead_nodes_are_orphaned():
    h, sid, (a, b, c) = await cluster(NodeFailure={"orphan_after": 3600})
    on_a = {t.id for t in h.running(sid) if t.node_id == a}
    await h.set_node_state(a, NodeState.DOWN)
    await until(lambda: len(h.runnable(sid)) == 6 and not on_a & {t.id for t in h.runnable(sid)})
    await h.clock.advance(3599)
    assert all(h.view().get_task(i).status.state == TaskState.RUNNING for i in on_a)
    await h.clock.advance(2)
    await until(lambda: all(h.view().get_task(i).status.state == TaskState.ORPHANED for i in on_a))
    await h.stop()


async def test_drain_starts_replacements_first_and_never_orphans():
    from swarmkit_py.store import NodeAvailability

    h, sid, (a, b, c) = await cluster()
    on_a = {t.id for t in h.running(sid) if t.node_id == a}
    assert on_a
    await h.edit_node(a, lambda n: setattr(n.spec, "availability", NodeAvailability.DRAIN))
    await settle()
    # start-first: the drained node's tasks keep running until their replacements run
    assert all(h.view().get_task(i).desired_state == TaskState.RUNNING for i in on_a)
    assert len(h.running(sid)) == 6
    await h.work()  # the replacements start elsewhere
    await until(lambda: all(h.view().get_task(i).desired_state == TaskState.SHUTDOWN for i in on_a))
    assert sorted(t.slot for t in h.runnable(sid)) == [1, 2, 3, 4, 5, 6]
    assert all(t.node_id != a for t in h.runnable(sid))
    # drained is not down: nothing is orphaned, however long it lasts
    await h.clock.advance(10 * 86400)
    await settle()
    assert all(h.view().get_task(i).status.state != TaskState.ORPHANED for i in on_a)
    await h.stop()


async def test_drain_still_empties_the_node_when_replacements_fit_nowhere():
    from swarmkit_py.store import NodeAvailability

    h, sid, (a, b, c) = await cluster()
    on_a = {t.id for t in h.running(sid) if t.node_id == a}
    await h.edit_node(a, lambda n: setattr(n.spec, "availability", NodeAvailability.DRAIN))
    await settle()
    pending = [t for t in h.runnable(sid) if t.node_id is None]
    assert pending
    for t in pending:  # what the scheduler writes when no node fits
        c = h.view().get_task(t.id).clone()
        c.status.err = "no suitable node (1 node not available for new tasks)"
        await h.write(c)
    await until(lambda: all(h.view().get_task(i).desired_state == TaskState.SHUTDOWN for i in on_a))
    await h.stop()


async def test_many_down_nodes_are_handled_in_bounded_passes(monkeypatch):
    """Issue 13: after a failover that ended with most of 1,000 nodes Down, one pass replaced
    9,000 tasks and held the leader's loop for 16 s. A pass now stops at its budget and the
    next ones finish the work: every task is still replaced, none twice."""
    monkeypatch.setattr(NodeFailure, "pass_budget", 4)
    h, sid, ids = await cluster(replicas=12, nodes=4)
    down = ids[:3]
    on_down = {t.id for t in h.running(sid) if t.node_id in down}
    assert len(on_down) >= 6
    for nid in down:
        await h.set_node_state(nid, NodeState.DOWN)
    await until(lambda: all(h.view().get_task(i).desired_state == TaskState.SHUTDOWN for i in on_down))
    runnable = h.runnable(sid)
    assert sorted(t.slot for t in runnable) == list(range(1, 13))  # each slot once
    assert not on_down & {t.id for t in runnable}
    await h.stop()
