"""The scheduler as a leader loop: follows the store, places pending tasks in batches, and
writes the decisions back through the proposer (docs/design/tasks.md, step 2).

- start(): one read of the whole store (nodes, every task's footprint, the pending tasks),
  and a watch taken in the same instant, so nothing falls between them.
- Work is event driven. A new pending task, a node change (a node becoming Ready or
  active again is how a pending task gets its second chance) or a task releasing its node
  marks the state dirty; the loop then keeps absorbing events until none arrive for
  `debounce` seconds (bounded by `max_delay`), so a 100-replica service created over a few
  transactions is scheduled as one batch and spread as a whole.
- One transaction per batch (split every `max_tx_ops` updates so a Raft entry stays around a
  megabyte): `node_id` + `assigned` for placed tasks; for unplaceable ones the pending
  `err`, written only when it changes (a cluster with 1,000 stuck tasks does not rewrite
  them on every node heartbeat).
- At most `max_batch` pending tasks per batch, oldest first; the rest go in the next batch
  right after. A 100,000-replica fill is then scheduled a couple of thousand at a time with
  the event loop free in between, instead of one pass that holds it for many seconds.
- A `SequenceError` (someone changed a task between our read and our write, typically the
  orchestrator shutting it down) undoes the batch's tentative placements, re-reads those
  tasks and schedules again. Other failures (lost leadership, no quorum) are retried with a
  capped exponential back-off until `stop()`; the loop itself is a `Background` (a crash is
  logged and the loop restarted).
- Placements never go to Down, paused or drained nodes: the ready filter refuses them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from ...background import Background
from ...store import DELETE, Event, StoreError, Task, Transaction
from ...store.follow import StoreFollower
from ...store.objects import TaskState, TaskStatus
from ...store.timefmt import utcnow
from ..proposer import Proposer
from .core import Decision, is_schedulable, schedule_tasks
from .nodeinfo import NodeSet

log = logging.getLogger("swarmkit_py.manager.scheduler")


class SchedulerLoop:
    def __init__(
        self,
        proposer: Proposer,
        *,
        debounce: float = 0.005,
        max_delay: float = 0.05,
        max_tx_ops: int = 500,
        max_batch: int = 2000,
        retry_delay: float = 0.05,
        max_retry_delay: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if max_tx_ops < 1 or max_batch < 1:
            raise ValueError("max_tx_ops and max_batch must be at least 1")
        self.max_batch = max_batch
        self.proposer = proposer
        self.store = proposer.store
        self.debounce = debounce
        self.max_delay = max_delay
        self.max_tx_ops = max_tx_ops
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.clock = clock
        self.nodes = NodeSet()
        self.pending: dict[str, Task] = {}
        """Tasks waiting for a node, as the store last showed them (versions matter)."""
        self.stats = {
            "batches": 0,
            "transactions": 0,
            "assigned": 0,
            "errors_written": 0,
            "conflicts": 0,
        }
        self.follower = StoreFollower(self.store, ("task", "node"), name="scheduler")
        self._dirty = False
        self._loop = Background("scheduler", self._run)

    # -- life cycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop.running

    def start(self) -> None:
        if self.running:
            return
        self._resync()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        self.follower.close()

    def _resync(self) -> None:
        """Start over from the store: at start, and when the watch stream broke."""
        self.follower.open()
        view = self.store.view()  # no await since the watch was taken: no gap
        self.nodes = NodeSet()
        self.pending = {}
        for node in view.nodes():
            self.nodes.add_or_update_node(node)
        for task in view.list("task"):
            self._observe_task(task)
        self._dirty = bool(self.pending)

    # -- following the store ------------------------------------------------------------------

    def _observe_task(self, task: Task) -> None:
        held_before = self.nodes.holds(task.id)
        self.nodes.observe_task(task)
        if is_schedulable(task):
            old = self.pending.get(task.id)
            if (
                old is None
                or old.node_id != task.node_id
                or old.desired_state != task.desired_state
                or (old.spec is not task.spec and old.spec != task.spec)
            ):
                self._dirty = True
            self.pending[task.id] = task
            return
        self.pending.pop(task.id, None)
        if held_before is not None and self.nodes.holds(task.id) is None and self.pending:
            self._dirty = True  # resources or a replica slot freed up: retry the waiting

    def _handle(self, ev: Event) -> None:
        if ev.kind == "task":
            if ev.action == DELETE:
                assert ev.old is not None
                released = self.nodes.holds(ev.old.id) is not None
                self.nodes.forget(ev.old.id)
                self.pending.pop(ev.old.id, None)
                if released and self.pending:
                    self._dirty = True
            else:
                self._observe_task(ev.new)  # type: ignore[arg-type]
        elif ev.kind == "node":
            if ev.action == DELETE:
                assert ev.old is not None
                self.nodes.remove_node(ev.old.id)
            else:
                self.nodes.add_or_update_node(ev.new)  # type: ignore[arg-type]
                if self.pending:
                    self._dirty = True

    def _absorb(self, events) -> None:
        """Handle a batch from the follower; None means the stream was lost: start over."""
        if events is None:
            self._resync()
            return
        for ev in events:
            self._handle(ev)

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.retry_delay
        while True:
            try:
                if not self._dirty:
                    self._absorb(await self.follower.next())
                    continue
                await self._debounce()
                await self.tick()
                backoff = self.retry_delay
            except Exception:
                log.exception("scheduling batch failed; retrying in %.2fs", backoff)
                self._dirty = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_retry_delay)

    async def _debounce(self) -> None:
        """Absorb events until `debounce` seconds pass without one (at most `max_delay`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay
        while True:
            self._absorb(self.follower.poll())
            remaining = min(self.debounce, deadline - loop.time())
            if remaining <= 0:
                return
            events = await self.follower.next(timeout=remaining)
            if events == []:
                return
            self._absorb(events)

    async def tick(self) -> None:
        """Schedule everything pending now and write the outcome (public for tests)."""
        self._dirty = False
        if not self.pending:
            return
        self.stats["batches"] += 1
        pending = list(self.pending.values())
        if len(pending) > self.max_batch:
            # a bounded batch per tick (the oldest first: dicts keep arrival order) keeps the
            # event loop, and so the API and the dispatcher, answering during a huge fill
            pending = pending[: self.max_batch]
            self._dirty = True
        decisions = schedule_tasks(self.nodes, pending)
        now = self.clock()
        updates: list[tuple[Decision, Task]] = []
        for d in decisions:
            new = self._updated(d, now)
            if new is not None:
                updates.append((d, new))
            elif d.placed:  # cannot happen (placed always updates); keep accounting honest
                self.nodes.forget(d.task.id)
        for start in range(0, len(updates), self.max_tx_ops):
            chunk = updates[start : start + self.max_tx_ops]
            tx = Transaction(now, handed_over=True)  # never touched once proposed
            for _, new in chunk:
                tx.update(new)
            try:
                await self.proposer.propose(tx)
            except StoreError as err:
                # The store refused the batch as a whole (a task changed or vanished since
                # we read it): undo, re-read those tasks, and go again.
                self.stats["conflicts"] += 1
                log.debug("scheduler batch refused (%s); re-reading %d tasks", err, len(chunk))
                self._undo(chunk)
                self._reread(chunk)
                self._dirty = True
                continue
            except BaseException:
                self._undo(updates[start:])
                raise
            self.stats["transactions"] += 1
            for d, _ in chunk:
                if d.placed:
                    self.stats["assigned"] += 1
                else:
                    self.stats["errors_written"] += 1

    def _updated(self, d: Decision, now: datetime) -> Task | None:
        """The task as the decision wants it stored, or None when nothing changes. Shallow
        copies: nothing changes a stored object in place, nor these once proposed (the
        leader's store keeps copies of them: `apply_local`), so sharing the unchanged spec
        with the stored task is safe and saves a deep copy per task."""
        t = d.task
        if d.placed:
            status = TaskStatus(timestamp=now, state=TaskState.ASSIGNED, message=d.message)
            return t.model_copy(update={"node_id": d.node_id, "status": status})
        if d.err == t.status.err:
            return None
        status = t.status.model_copy(update={"err": d.err, "timestamp": now})
        return t.model_copy(update={"status": status})

    def _undo(self, chunk: list[tuple[Decision, Task]]) -> None:
        for d, _ in chunk:
            if d.placed:
                self.nodes.forget(d.task.id)

    def _reread(self, chunk: list[tuple[Decision, Task]]) -> None:
        view = self.store.view()
        for d, _ in chunk:
            current = view.get_task(d.task.id)
            if current is None:
                self.nodes.forget(d.task.id)
                self.pending.pop(d.task.id, None)
            else:
                self._observe_task(current)


__all__ = ["SchedulerLoop"]
