"""The task reaper: deletes tasks nobody needs to see any more.

1. History. At most `TaskHistoryRetentionLimit` tasks (cluster spec; 5 by default; negative
   keeps everything) per slot of a replicated service, per node of a global one, counting the
   current task as Swarm does - so `docker service ps` shows the same number of lines as on
   Swarm. The oldest go first, and only tasks that are over: observed terminal and no longer
   held (a task finished per its restart policy still holds its slot, see slots.py, and is
   never reaped, or the slot would be refilled).
2. Removal. A task desired `remove` (its service was deleted, or its global node removed) is
   deleted once it has stopped, was never handed to a worker (no node, or still `pending`
   before the scheduler's `assigned`), or its node is down or gone (nothing will ever report
   it stopped).
"""

from __future__ import annotations

from ...store import TaskState, View
from .defaults import history_limit
from .loop import Batch, StoreLoop
from .slots import holds, newest_first, node_down


def _removable(view: View, t) -> bool:
    if t.desired_state < TaskState.REMOVE:
        return False
    if t.status.state.terminal or t.node_id is None or t.status.state < TaskState.ASSIGNED:
        return True
    node = view.get_node(t.node_id)
    return node is None or node_down(node)


def _live(t) -> bool:
    return holds(t) or not t.status.state.terminal


class TaskReaper(StoreLoop):
    name = "reaper"
    kinds = ("task", "node", "cluster")

    def reconcile(self, view: View, batch: Batch, events) -> None:
        limit = history_limit(view.cluster())
        if events is None or any(e.kind == "cluster" for e in events):
            tasks = view.list("task")
            doomed = [t for t in view.find("task", desired_state=TaskState.REMOVE) if _removable(view, t)]
        else:
            ids = {e.obj.id for e in events if e.kind == "task" and e.new is not None}
            tasks = [t for t in map(view.get_task, ids) if t is not None]
            doomed = [t for t in tasks if _removable(view, t)]
            for e in events:
                if e.kind == "node" and (e.new is None or node_down(e.new)):
                    on_node = view.tasks(node_id=e.obj.id, desired_state=TaskState.REMOVE)
                    doomed += [t for t in on_node if _removable(view, t)]
        for t in doomed:
            batch.delete(t)
        if limit < 0:
            return
        deleted = {t.id for t in doomed}
        groups = {(t.service_id, t.slot, None if t.slot is not None else t.node_id) for t in tasks if t.service_id}
        for sid, slot, node_id in groups:
            if view.get_service(sid) is None:
                continue
            if slot is not None:
                members = view.tasks(service_id=sid, slot=slot)
            elif node_id is not None:
                members = [t for t in view.tasks(node_id=node_id) if t.service_id == sid and t.slot is None]
            else:
                continue
            members = [t for t in members if t.id not in deleted]
            excess = len(members) - limit
            if excess <= 0:
                continue
            for t in reversed(newest_first(members)):
                if excess <= 0:
                    break
                if not _live(t):
                    batch.delete(t)
                    excess -= 1
