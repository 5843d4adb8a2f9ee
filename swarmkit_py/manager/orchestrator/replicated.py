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

A pass costs what changed, not the service's size: which slots are held, how many tasks are
starting, which slots above Replicas still hold a task and the lowest missing slot are kept
per service in a `SlotBook` (slotbook.py), updated from the task events each pass receives.
Walking all of a service's tasks each pass, then 1..Replicas, was 20,000 tasks and more per
pass for a few hundred new ones in a 100,000-replica fill (issue 13). The books are rebuilt
from the store on a full pass (start, a lost watch, a snapshot restore), for the services a
conflicted pass looks at again, and for a service whose batch of new tasks did not commit.
Scale-down stops the lowest of the slots above Replicas first.
"""

from __future__ import annotations

from ...store import TaskState, View
from .loop import MAX_OPS, Batch, StoreLoop, touched
from .slotbook import SlotBook, starting
from .slots import holds, is_replicated, replicas
from .taskinit import new_task, template_parts


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
        self._books: dict[str, SlotBook] = {}
        """Per service (replicated, or deleted with slotted tasks left): its slots."""
        self._synced = -1
        """Store index the books are known to reflect (the first attempt of a pass applies
        the events up to its view); a book older than a later view is rebuilt before use."""
        self._claimed: set[str] = set()
        """Services whose book claimed slots for a batch not known to be committed."""
        self._plan: tuple[set[str], set[str]] | None = None
        """This pass's services to look at and the throttled ones kept, worked out on its first
        attempt from the events (a conflicted pass's attempts reuse it)."""

    def reconcile(self, view: View, batch: Batch, events) -> None:
        # claims of a batch that did not commit (a conflict, or a pass given up) are void
        for sid in self._claimed:
            self._books.pop(sid, None)
        self._claimed.clear()
        if events is None:
            self._full_pass(view, batch)
            return
        if self._plan is None:
            self._plan = self._first_attempt(view, events)
        todo, throttled = self._plan
        # a conflicted pass is rebuilt from scratch: the budget and backlog with it
        self._budget = self.create_budget
        self._backlog = set()
        self._throttled = set(throttled)
        for sid in todo:
            svc = view.get_service(sid)
            if svc is None:
                self._remove_all(view, batch, sid)
            elif is_replicated(svc):
                self._service(view, batch, svc)

    def _full_pass(self, view: View, batch: Batch) -> None:
        self._plan = None
        self._budget = self.create_budget
        self._backlog, self._throttled = set(), set()
        self._left.clear()
        services = view.services()
        alive = {s.id for s in services}
        self._rebuild(view, services)
        for svc in services:
            if is_replicated(svc):
                self._service(view, batch, svc)
        for sid in [sid for sid in self._books if sid not in alive]:
            self._remove_all(view, batch, sid)

    def _rebuild(self, view: View, services) -> None:
        """Every book from the store: replicated services, and deleted ones with tasks left."""
        keep = {s.id: replicas(s) for s in services if is_replicated(s)}
        alive = {s.id for s in services}
        grouped: dict[str, list] = {sid: [] for sid in keep}
        for t in view.list("task"):
            if t.slot is not None and (t.service_id in keep or t.service_id not in alive):
                grouped.setdefault(t.service_id, []).append(t)
        self._books = {sid: SlotBook.build(ts, keep.get(sid, 0), view.index) for sid, ts in grouped.items()}
        self._synced = view.index

    def _first_attempt(self, view: View, events) -> tuple[set[str], set[str]]:
        """Bring the books up to `view` (the events are everything up to it) and work out the
        services to look at: those the events touched, the backlog, and throttled services
        with room again."""
        backlog, throttled = self._backlog, self._throttled
        books = self._books
        for e in events:
            if e.kind != "task":
                continue
            t = e.new if e.new is not None else e.old
            book = books.get(t.service_id)
            if book is None or e.index <= book.base:
                continue
            if e.new is None:
                book.drop(t.id)
            else:
                book.put(t)
        self._synced = view.index
        # a throttled service is looked at again once enough of its tasks left the starting
        # set (started, failed, stopped): there is room for that many new ones
        left = self._left
        for e in events:
            if e.kind == "task" and e.old is not None and e.new is not None \
                    and e.new.service_id in throttled and starting(e.old) and not starting(e.new):
                left[e.new.service_id] = left.get(e.new.service_id, 0) + 1
        moved = {sid for sid in throttled if left.get(sid, 0) >= self.resume_after}
        for sid in moved:
            del left[sid]
        return self._dirty(view, events) | backlog | moved, throttled - moved

    def _book(self, view: View, sid: str, n: int | None) -> SlotBook:
        """The service's book, built from `view` if there is none or it may be older than the
        view (an attempt after a conflict); `n`: the service's replicas (None: deleted)."""
        book = self._books.get(sid)
        if book is None or (book.base < view.index and self._synced < view.index):
            book = self._books[sid] = SlotBook.build(view.tasks(service_id=sid), n or 0, view.index)
        elif n is not None:
            book.set_n(n)
        return book

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

    def _remove_all(self, view: View, batch: Batch, sid: str) -> None:
        book = self._book(view, sid, None)
        for tid in book.tasks:
            if not self._spend(sid):
                return
            _set_desired(batch, view.get_task(tid), TaskState.REMOVE)
        if book.empty:
            del self._books[sid]

    def _service(self, view: View, batch: Batch, svc) -> None:
        sid = svc.id
        self._left.pop(sid, None)  # this pass sees them
        book = self._book(view, sid, replicas(svc))
        if book.above:
            self._scale_down(view, batch, sid, book)
        now = self.clock()
        room = self.starting_window - book.starting
        parts = None  # one copy of the template and endpoint for this pass's new tasks (new_task)
        while (slot := book.next_missing()) is not None:
            if room <= 0:
                self._throttled.add(sid)
                break
            if not self._spend(sid):
                break
            parts = parts or template_parts(svc)
            batch.create(new_task(svc, self.new_id(), now, slot=slot, parts=parts))
            book.claim(slot)
            self._claimed.add(sid)
            room -= 1

    def _scale_down(self, view: View, batch: Batch, sid: str, book: SlotBook) -> None:
        """Every task holding a slot above the replicas desired `shutdown`, lowest slots
        first, as far as the budget goes."""
        for slot in book.lowest_above(self._budget + 1):
            for t in view.tasks(service_id=sid, slot=slot):
                if holds(t):
                    if not self._spend(sid):
                        return
                    _set_desired(batch, t, TaskState.SHUTDOWN)

    def committed(self) -> None:
        self._claimed.clear()  # the tasks made are in the store: their events follow

    async def after_pass(self) -> None:
        self._plan = None
        if self._backlog:
            self.kick()  # continue on the next pass, after others had the event loop


def _set_desired(batch: Batch, t, state: TaskState) -> None:
    """`t` desired `state` in the batch, through a shallow copy rather than `clone()`: only
    this top-level field differs, and the copy is only encoded into the transaction (the
    store applies a decoded object of its own), so sharing the stored task's nested objects is
    safe. A deep copy per task was nine tenths of a scale-down's or a service removal's pass
    (~80 ms for 250 tasks on the loaded machine, held on the event loop). Nothing else in this
    loop changes a task it stops, so no rule is handed this copy to change further."""
    c = t.model_copy()
    c.desired_state = state
    batch.update(c)


__all__ = ["ReplicatedOrchestrator"]
