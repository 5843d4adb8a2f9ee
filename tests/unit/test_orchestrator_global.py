"""Global orchestrator: one task per eligible node; drain, pause, constraints, new and removed
nodes; down nodes through the node-failure loop; unknown nodes keep their task."""

from __future__ import annotations

import pytest

from swarmkit_py.manager.orchestrator import (
    GlobalOrchestrator,
    NodeFailure,
    RestartSupervisor,
    TaskReaper,
)
from swarmkit_py.store import (
    NodeAvailability,
    NodeState,
    Placement,
    TaskState,
    Transaction,
)
from tests.unit.test_orchestrator_fixtures import Harness, template, until

pytestmark = pytest.mark.asyncio


def placed(h, sid):
    return sorted(t.node_id for t in h.runnable(sid))


async def test_one_task_per_ready_active_node_named_by_node():
    h = Harness()
    a = await h.add_node("a")
    b = await h.add_node("b")
    await h.add_node("c", state=NodeState.DOWN)
    await h.add_node("d", availability=NodeAvailability.DRAIN)
    await h.start(GlobalOrchestrator, NodeFailure)
    sid = await h.add_service("agent", global_=True)
    await until(lambda: placed(h, sid) == sorted([a, b]))
    for t in h.runnable(sid):
        assert t.slot is None and t.name == f"agent.{t.node_id}"
        assert t.status.state == TaskState.PENDING
    await h.stop()


async def test_new_node_drain_pause_and_removal():
    h = Harness()
    a = await h.add_node("a")
    await h.start(GlobalOrchestrator, NodeFailure, TaskReaper)
    sid = await h.add_service("agent", global_=True)
    await until(lambda: placed(h, sid) == [a])
    b = await h.add_node("b")
    await until(lambda: placed(h, sid) == sorted([a, b]), what="task on the new node")
    await h.work()
    await h.edit_node(b, lambda n: setattr(n.spec, "availability", NodeAvailability.DRAIN))
    await until(lambda: placed(h, sid) == [a], what="drained")
    await h.edit_node(b, lambda n: setattr(n.spec, "availability", NodeAvailability.PAUSE))
    await h.clock.advance(1)
    assert placed(h, sid) == [a]  # pause places nothing new
    await h.edit_node(a, lambda n: setattr(n.spec, "availability", NodeAvailability.PAUSE))
    await h.clock.advance(1)
    assert placed(h, sid) == [a]  # ...but keeps what runs
    await h.edit_node(b, lambda n: setattr(n.spec, "availability", NodeAvailability.ACTIVE))
    await until(lambda: placed(h, sid) == sorted([a, b]), what="re-activated")
    await h.work()
    h._apply(Transaction(h.clock()).delete("node", b))
    await until(lambda: all(t.node_id == a for t in h.tasks(sid)), what="removed node's tasks deleted")
    await h.stop()


async def test_constraint_changes_move_tasks():
    h = Harness()
    a = await h.add_node("a", labels={"zone": "east"})
    b = await h.add_node("b", labels={"zone": "west"})
    await h.start(GlobalOrchestrator)
    spec = template(placement=Placement(constraints=["node.labels.zone==east"]))
    sid = await h.add_service("agent", global_=True, spec=spec)
    await until(lambda: placed(h, sid) == [a])

    def west(s):
        s.task_template.placement.constraints = ["node.labels.zone != east"]

    await h.update_service(sid, west)
    await until(lambda: placed(h, sid) == [b], what="moved to west")
    await h.edit_node(a, lambda n: n.spec.labels.update(zone="north"))
    await until(lambda: placed(h, sid) == sorted([a, b]), what="label change")
    await h.stop()


async def test_down_node_stops_its_task_and_unknown_keeps_it():
    h = Harness()
    a = await h.add_node("a")
    b = await h.add_node("b")
    await h.start(GlobalOrchestrator, NodeFailure, RestartSupervisor)
    sid = await h.add_service("agent", global_=True)
    await until(lambda: placed(h, sid) == sorted([a, b]))
    await h.work()
    await h.set_node_state(b, NodeState.UNKNOWN)
    await h.clock.advance(10)
    assert placed(h, sid) == sorted([a, b])
    await h.set_node_state(b, NodeState.DOWN)
    await until(lambda: placed(h, sid) == [a])
    await h.set_node_state(b, NodeState.READY)
    await until(lambda: placed(h, sid) == sorted([a, b]), what="fresh task when it is back")
    assert len([t for t in h.tasks(sid) if t.node_id == b]) == 2
    await h.stop()


async def test_global_restart_stays_on_its_node():
    h = Harness()
    a = await h.add_node("a")
    await h.start(GlobalOrchestrator, RestartSupervisor)
    sid = await h.add_service("agent", global_=True)
    await until(lambda: placed(h, sid) == [a])
    await h.work()
    (t,) = h.running(sid)
    await h.set_task(t.id, TaskState.FAILED)
    await h.clock.advance(5.1)
    await until(lambda: len(h.tasks(sid)) == 2)
    assert placed(h, sid) == [a]
    await h.stop()


async def test_global_service_removal():
    h = Harness()
    await h.add_node("a")
    await h.start(GlobalOrchestrator, TaskReaper)
    sid = await h.add_service("agent", global_=True)
    await until(lambda: len(h.runnable(sid)) == 1)
    await h.delete_service(sid)
    await until(lambda: h.tasks(sid) == [], what="never-started task deleted")
    await h.stop()
