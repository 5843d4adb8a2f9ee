"""The replicated orchestrator: exactly one held task per slot 1..Replicas.

Scale up fills every missing slot in one transaction with new `pending` tasks; scale down
marks every task in a slot above Replicas desired `shutdown`; a deleted service has all its
tasks marked desired `remove` (the task reaper deletes them once they are stopped or their
node is gone). It never replaces a task in a held slot: failed tasks are the restart
supervisor's, tasks of dead nodes the node-failure loop's, out-of-date ones the update
supervisor's. Keeping each concern in one loop is what keeps them from fighting.

Scale-down removes the *highest* slots. Swarm instead picks victims (not-running tasks first,
then tasks on the most loaded nodes) and leaves holes in the numbering (`web.1`, `web.4`).
Here the names stay `web.1..web.N` - what users and the CLI's progress display expect - at
the cost that a scale-down may stop a running task while a pending one in a lower slot stays.
That preference is still applied where it is free: when a slot holds several runnable tasks,
the update supervisor keeps the running, up-to-date one.

Tasks whose service no longer exists (deleted while another leader was in charge) are found
on the full pass: those with a slot here, global ones (no slot) by the global orchestrator.
"""

from __future__ import annotations

from ...store import TaskState, View
from .loop import Batch, StoreLoop, touched
from .slots import holds, is_replicated, replicas
from .taskinit import new_task


class ReplicatedOrchestrator(StoreLoop):
    name = "replicated"
    kinds = ("service", "task")

    def reconcile(self, view: View, batch: Batch, events) -> None:
        if events is None:
            for svc in view.services():
                if is_replicated(svc):
                    self._service(view, batch, svc)
            alive = {s.id for s in view.services()}
            for t in view.find("task", where=lambda t: t.slot is not None and t.service_id not in alive):
                _remove(batch, t)
            return
        for sid in self._dirty(events):
            svc = view.get_service(sid)
            if svc is None:
                for t in view.tasks(service_id=sid):
                    if t.slot is not None:
                        _remove(batch, t)
            elif is_replicated(svc):
                self._service(view, batch, svc)

    @staticmethod
    def _dirty(events) -> set[str]:
        """Services whose events were service changes, or task changes that may have emptied
        a slot (a task deleted, or no longer holding its slot)."""
        dirty = touched(events, "service", lambda s: s.id)
        for e in events:
            if e.kind != "task":
                continue
            old, new = e.old, e.new
            if new is None or old is None or holds(old) != holds(new):
                dirty.add((new or old).service_id)
        return dirty

    def _service(self, view: View, batch: Batch, svc) -> None:
        n = replicas(svc)
        held: set[int] = set()
        for t in view.tasks(service_id=svc.id):
            if t.slot is None or not holds(t):
                continue
            if t.slot > n:
                batch.updated(t).desired_state = TaskState.SHUTDOWN
            else:
                held.add(t.slot)
        now = self.clock()
        for slot in range(1, n + 1):
            if slot not in held:
                batch.create(new_task(svc, self.new_id(), now, slot=slot))


def _remove(batch: Batch, t) -> None:
    if t.desired_state < TaskState.REMOVE:
        batch.updated(t).desired_state = TaskState.REMOVE


__all__ = ["ReplicatedOrchestrator"]
