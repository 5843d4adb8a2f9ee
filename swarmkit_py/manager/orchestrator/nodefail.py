"""Node failure and drain: move work off nodes the dispatcher declared `down` at once, and
off nodes the operator drained without losing a replica (the replacement runs first).

When a node is `down` (or was removed from the cluster with tasks still on it), every task on
it that should be running is marked desired `shutdown`, and - in the same transaction - a
replicated task's slot gets a new task to schedule elsewhere. There is no restart delay: the
task did not fail, its host died, and every second spent waiting is a second of missing
replicas. A global service simply stops having a task there.

What it never does:
- touch tasks of nodes that are `ready`, `unknown` or `disconnected`. After a leader change
  the new leader may not have heard from a node yet; only the dispatcher's verdict `down`
  (after its grace period) counts, so a healthy node's tasks are never rescheduled by an
  election.
- bring an old task back. Desired state only moves forward: when a dead node returns and
  reports its old tasks (even as `running`), they stay desired `shutdown`, the dispatcher
  sends the node that set, and the worker stops the stale containers.

After `orphan_after` (24 h, as Swarm) a down node's unfinished tasks are written off:
observed state `orphaned`, so they count as history and the reaper can trim them. How long a
node has been down is bounded from below by its last write (`updated_at`), so a new leader
never orphans early.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ...store import NodeAvailability, NodeState, TaskState, View
from .defaults import ORPHAN_AFTER
from .loop import MAX_OPS, Batch, StoreLoop
from .slots import is_replicated, node_down, replicas, runnable
from .taskinit import new_task

ORPHAN_MESSAGE = "task orphaned: its node has been down for too long"


class NodeFailure(StoreLoop):
    name = "nodefail"
    kinds = ("node", "task")
    pass_budget = MAX_OPS // 2
    """Writes one pass gathers before it leaves the remaining nodes to the next pass."""

    def __init__(self, proposer, *, orphan_after: float = ORPHAN_AFTER, **kw) -> None:
        super().__init__(proposer, **kw)
        self.orphan_after = orphan_after
        self._down_seen: dict[str, datetime] = {}
        self._leftover: set[str] = set()  # nodes a pass over its budget left to the next one

    async def after_pass(self) -> None:
        if self._leftover:
            self.kick()  # the nodes left over get the next pass even if nothing else changes

    def reconcile(self, view: View, batch: Batch, events) -> None:
        now = self.clock()
        down = {n.id: n for n in view.nodes(state=NodeState.DOWN)}
        self._down_seen = {k: v for k, v in self._down_seen.items() if k in down}
        for nid in down:
            self._down_seen.setdefault(nid, now)
        if events is None:
            nodes = set(down) | {n.id for n in view.nodes() if _drained(n)}
            gone = {t.node_id for t in view.find("task", where=lambda t: t.node_id is not None and runnable(t))}
            nodes |= {nid for nid in gone if view.get_node(nid) is None}
        else:
            nodes = {k[1] for k in self.fired if isinstance(k, tuple)}
            # a drained node waits for its replacements to run: any task event may be the one
            nodes |= {n.id for n in view.nodes() if _drained(n)}
            for e in events:
                if e.kind == "node":
                    nodes.add(e.obj.id)
                elif e.new is not None and e.new.node_id is not None:
                    nodes.add(e.new.node_id)
        nodes |= self._leftover
        self._leftover = set()
        created: set[tuple[str, int]] = set()
        for nid in sorted(nodes):
            if len(batch) >= self.pass_budget:
                # Bounded passes: after a leader change that ended with most of 1,000 nodes
                # Down, one pass replacing 9,000 tasks held the leader's loop for 16 s
                # (issue 13). The rest is done by the next pass, which this pass's own writes
                # trigger.
                self._leftover.add(nid)
                continue
            node = view.get_node(nid)
            if node is not None and not node_down(node) and not _drained(node):
                continue
            tasks = view.tasks(node_id=nid)
            drained_only = node is not None and not node_down(node)
            for t in tasks:
                if runnable(t):
                    if drained_only:
                        self._drain(view, batch, t, now, created)
                    else:
                        self._replace(view, batch, t, now, created)
            if node is not None and node_down(node):
                self._orphan(batch, node, tasks, now)

    def _replace(self, view: View, batch: Batch, t, now: datetime, created: set) -> None:
        svc = view.get_service(t.service_id)
        if svc is not None and not is_replicated(svc) and view.get_node(t.node_id) is None:
            return  # a global task of a removed node: the global orchestrator removes it
        batch.updated(t).desired_state = TaskState.SHUTDOWN
        if svc is None or not is_replicated(svc) or t.slot is None or t.slot > replicas(svc):
            return
        key = (svc.id, t.slot)
        if key in created:
            return
        others = [
            o
            for o in view.tasks(service_id=svc.id, slot=t.slot)
            if o.id != t.id and runnable(o) and not _on_dead_node(view, o)
        ]
        if others:
            return  # the slot still has a live task (start-first update in flight)
        created.add(key)
        batch.create(new_task(svc, self.new_id(), now, slot=t.slot))

    def _drain(self, view: View, batch: Batch, t, now: datetime, created: set) -> None:
        """Start-first: the task on a drained node keeps running until its replacement runs
        elsewhere, so draining a node (as a rolling upgrade does) never costs a replica."""
        svc = view.get_service(t.service_id)
        if svc is None or not is_replicated(svc) or t.slot is None or t.slot > replicas(svc):
            batch.updated(t).desired_state = TaskState.SHUTDOWN
            return
        others = [
            o
            for o in view.tasks(service_id=svc.id, slot=t.slot)
            if o.id != t.id and runnable(o) and not _on_dead_node(view, o)
        ]
        if any(o.status.state == TaskState.RUNNING for o in others):
            batch.updated(t).desired_state = TaskState.SHUTDOWN
            return
        if others and all(o.status.state == TaskState.PENDING and o.status.err for o in others):
            # the replacement fits nowhere: a drain still empties the node (as in Swarm), and
            # the slot waits, pending with the scheduler's reason
            batch.updated(t).desired_state = TaskState.SHUTDOWN
            return
        if t.status.state != TaskState.RUNNING:
            batch.updated(t).desired_state = TaskState.SHUTDOWN  # nothing to keep alive
            if others:
                return
        key = (svc.id, t.slot)
        if others or key in created:
            return  # the replacement is on its way
        created.add(key)
        batch.create(new_task(svc, self.new_id(), now, slot=t.slot))

    def _orphan(self, batch: Batch, node, tasks, now: datetime) -> None:
        updated = node.updated_at or now
        since = min(self._down_seen.get(node.id, now), updated)
        due = since + timedelta(seconds=self.orphan_after)
        live = [t for t in tasks if not t.status.state.terminal]
        if not live:
            return
        if due > now:
            self.wake_at(("orphan", node.id), due)
            return
        for t in live:
            c = batch.updated(t)
            c.status.state = TaskState.ORPHANED
            c.status.message = ORPHAN_MESSAGE
            c.status.timestamp = now


def _drained(node) -> bool:
    return node.spec.availability == NodeAvailability.DRAIN


def _on_dead_node(view: View, t) -> bool:
    if t.node_id is None:
        return False
    node = view.get_node(t.node_id)
    return node is None or node_down(node) or _drained(node)
