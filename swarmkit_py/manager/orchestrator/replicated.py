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

Large counts are handled in bounded batches: at most `create_budget` tasks created or
stopped per pass, lowest slots first; a service with slots still
missing is kept in a backlog that the next pass continues (started at once, after the API
and the dispatcher had their turn on the event loop). And at most `starting_window` of a
service's tasks are on their way at once (created, not running yet): the next ones are
created as those start, so a fill goes at the pace the nodes really start tasks. So
`replicas: 100000` typed by mistake fills in a thousand tasks at a time: `service ps` shows
them arriving, `service ls` counts them, and a `service rm` or `scale` in between is served
in milliseconds and stops the filling (the next pass reads the new spec). Making all of them
in one pass held the event loop for tens of seconds.

Tasks whose service no longer exists (deleted while another leader was in charge) are found
on the full pass: those with a slot here, global ones (no slot) by the global orchestrator.
"""

from __future__ import annotations

from ...store import TaskState, View
from .loop import MAX_OPS, Batch, StoreLoop, touched
from .slots import holds, is_replicated, replicas, runnable
from .taskinit import new_task


class ReplicatedOrchestrator(StoreLoop):
    name = "replicated"
    kinds = ("service", "task")
    create_budget = MAX_OPS // 4
    """Tasks one pass may create or stop (over all services); the rest wait for the next.
    A quarter of a full transaction: each pass, and each member's apply of its entry, holds
    the event loop ~4x shorter, which is what a caller waiting behind it sees."""
    starting_window = MAX_OPS
    """A service's tasks that may be on their way (created, not yet running) at once; more
    are created as these start. Bounds the work in flight when replicas is far beyond what
    the cluster can start in one go, so the store grows at the rate tasks really start."""

    @property
    def resume_after(self) -> int:
        """Tasks of a throttled service that must leave the starting set (run, fail, stop)
        before it is looked at again. Looking again at each report of one made every status
        report a pass over all the service's tasks, for a handful of new ones: a third of the
        leader's CPU while 100,000 replicas filled (issue 13). It cannot stall: a service is
        throttled only with ``starting_window`` tasks on their way, ten times this."""
        return max(1, self.starting_window // 10)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._backlog: set[str] = set()
        self._throttled: set[str] = set()
        self._left: dict[str, int] = {}
        self._budget = self.create_budget

    def reconcile(self, view: View, batch: Batch, events) -> None:
        # a conflicted pass is rebuilt from scratch: the budget and backlog with it
        backlog, self._backlog = self._backlog, set()
        throttled, self._throttled = self._throttled, set()
        self._budget = self.create_budget
        if events is None:
            self._left.clear()
            for svc in view.services():
                if is_replicated(svc):
                    self._service(view, batch, svc)
            alive = {s.id for s in view.services()}
            orphans: dict[str, list] = {}
            for t in view.find("task", where=lambda t: t.slot is not None and t.service_id not in alive):
                orphans.setdefault(t.service_id, []).append(t)
            for sid, tasks in orphans.items():
                self._remove_all(batch, sid, tasks)
            return
        # a throttled service is looked at again once enough of its tasks left the starting
        # set (started, failed, stopped): there is room for that many new ones
        left = self._left
        for e in events:
            if e.kind == "task" and e.old is not None and e.new is not None \
                    and e.new.service_id in throttled and _starting(e.old) and not _starting(e.new):
                left[e.new.service_id] = left.get(e.new.service_id, 0) + 1
        moved = {sid for sid in throttled if left.get(sid, 0) >= self.resume_after}
        for sid in moved:
            del left[sid]
        self._throttled |= throttled - moved
        for sid in self._dirty(view, events) | backlog | moved:
            svc = view.get_service(sid)
            if svc is None:
                self._remove_all(batch, sid, [t for t in view.tasks(service_id=sid) if t.slot is not None])
            elif is_replicated(svc):
                self._service(view, batch, svc)

    @staticmethod
    def _dirty(view: View, events) -> set[str]:
        """Services whose events were service changes, or task changes that may have emptied
        a slot (a task deleted, or no longer holding its slot), or a task made in a slot the
        service does not have (another loop's replacement racing a scale-down). Not every
        task made: those are mostly this loop's own, and a pass over all of a service's tasks
        after each of its batches doubled its passes in a large fill (issue 13); a fill that
        has more to make goes on through the backlog or the starting window."""
        dirty = touched(events, "service", lambda s: s.id)
        for e in events:
            if e.kind != "task":
                continue
            old, new = e.old, e.new
            if new is None or (old is not None and holds(old) != holds(new)):
                dirty.add((new or old).service_id)
            elif old is None and new.service_id not in dirty:
                svc = view.get_service(new.service_id)
                if svc is None or (new.slot is not None and is_replicated(svc) and new.slot > replicas(svc)):
                    dirty.add(new.service_id)
        return dirty

    def _spend(self, sid: str) -> bool:
        """One op of this pass's budget; False (and the service backlogged) when spent."""
        if self._budget <= 0:
            self._backlog.add(sid)
            return False
        self._budget -= 1
        return True

    def _remove_all(self, batch: Batch, sid: str, tasks) -> None:
        for t in tasks:
            if t.desired_state < TaskState.REMOVE:
                if not self._spend(sid):
                    return
                batch.updated(t).desired_state = TaskState.REMOVE

    def _service(self, view: View, batch: Batch, svc) -> None:
        self._left.pop(svc.id, None)  # this pass sees them
        n = replicas(svc)
        held: set[int] = set()
        starting = 0
        for t in view.tasks(service_id=svc.id):
            if t.slot is None or not holds(t):
                continue
            if t.slot > n:
                if self._spend(svc.id):
                    batch.updated(t).desired_state = TaskState.SHUTDOWN
            else:
                held.add(t.slot)
                if _starting(t):
                    starting += 1
        now = self.clock()
        room = self.starting_window - starting
        for slot in range(1, n + 1):
            if slot in held:
                continue
            if room <= 0:
                self._throttled.add(svc.id)
                break
            if not self._spend(svc.id):
                break
            batch.create(new_task(svc, self.new_id(), now, slot=slot))
            room -= 1

    async def after_pass(self) -> None:
        if self._backlog:
            self.kick()  # continue on the next pass, after others had the event loop


def _starting(t) -> bool:
    """Counted against the starting window: meant to run, not running yet."""
    return runnable(t) and t.status.state < TaskState.RUNNING


__all__ = ["ReplicatedOrchestrator"]
