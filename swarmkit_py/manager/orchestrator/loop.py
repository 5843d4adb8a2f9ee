"""The shape every orchestration loop shares: read the store, follow its watch, write back in
batches, retry on conflicts, wake on timers.

Why it is built this way:
- Level-triggered. A pass looks at the current state of whatever the events touched (or of
  everything, on start and after a lost watch) and writes what is missing. Events only say
  *where* to look, so a lost event, a leader change or a retry can never leave a loop
  believing something false; the next pass simply recomputes.
- `start()` takes the watch (a `StoreFollower`) before the first read, with no `await` in
  between, so no change slips between the initial full pass and the stream; a lost stream
  means another full pass. The task is a `Background`: a loop that dies is logged and
  restarted.
- One transaction per pass (chunked at `MAX_OPS` so a Raft entry stays reasonable): a
  1,000-replica scale is one or two proposals, not a thousand.
- Optimistic concurrency. Every write of an existing object carries the version it was read
  at; if another loop or the dispatcher changed it meanwhile the store answers
  `SequenceError`, and the pass is rebuilt from a fresh view. Replacing a task always updates
  the old task (version-checked) in the same transaction that creates its successor, which is
  what stops two loops (say restart and node-failure) from both replacing it.
- Timers never block: `wake_at()` starts a small sleeper that, when due, marks a key and kicks
  the loop; the next pass does the timed work. Sleeping goes through the injected `sleep`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime

from ...background import Background
from ...store import Event, StoreError, Transaction, View, new_id
from ...store.follow import StoreFollower
from ...store.objects import StoreObject
from .clock import Clock, Sleep, asyncio_sleep, utcnow

log = logging.getLogger("swarmkit_py.manager.orchestrator")

MAX_OPS = 1000
"""Ops per transaction; a pass with more is split into several proposals."""
ATTEMPTS = 8
"""Rebuilds of a pass after store conflicts before leaving it to the next wake-up."""


class Batch:
    """The writes one pass wants, gathered before proposing. Updates are keyed by object, so
    two rules touching the same task in one pass merge into one op (the later clone wins)."""

    def __init__(self) -> None:
        self.creates: list[StoreObject] = []
        self.updates: dict[tuple[str, str], StoreObject] = {}
        self.deletes: dict[tuple[str, str], None] = {}

    def create(self, obj: StoreObject) -> None:
        self.creates.append(obj)

    def update(self, obj: StoreObject) -> None:
        self.updates[(obj.kind, obj.id)] = obj

    def updated(self, obj: StoreObject) -> StoreObject:
        """The pending clone of `obj` if this batch already changes it, else a new clone to
        change (and registered as an update)."""
        key = (obj.kind, obj.id)
        if key not in self.updates:
            self.updates[key] = obj.clone()
        return self.updates[key]

    def delete(self, obj: StoreObject) -> None:
        self.deletes[(obj.kind, obj.id)] = None

    def __len__(self) -> int:
        return len(self.creates) + len(self.updates) + len(self.deletes)

    def transactions(self, now: datetime) -> list[Transaction]:
        """Updates first, then creates, in chunks: a replacement's update of the old task and
        creation of the new one land in the same transaction whenever the batch is small,
        and for huge batches the update-before-create order keeps a conflict on the old task
        from leaving an orphaned new one."""
        ops: list[tuple[str, object]] = [("u", o) for o in self.updates.values()]
        ops += [("c", o) for o in self.creates]
        ops += [("d", k) for k in self.deletes]
        txs: list[Transaction] = []
        for i in range(0, len(ops), MAX_OPS):
            tx = Transaction(now, handed_over=True)  # never touched once proposed
            for action, item in ops[i : i + MAX_OPS]:
                if action == "u":
                    tx.update(item)
                elif action == "c":
                    tx.create(item)
                else:
                    tx.delete(*item)
            txs.append(tx)
        return txs


class StoreLoop:
    """Base of the leader loops. Subclasses set `kinds` and implement `reconcile(view, batch,
    events)`, where `events` is None for a full pass."""

    name = "orchestrator"
    kinds: tuple[str, ...] = ()

    def __init__(
        self,
        proposer,
        *,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio_sleep,
        rng: random.Random | None = None,
        retry_delay: float = 0.5,
    ) -> None:
        self.proposer = proposer
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.retry_delay = retry_delay
        self.follower = StoreFollower(self.store, self.kinds or None, name=f"orchestrator {self.name}")
        self._loop = Background(f"orchestrator-{self.name}", self._run)
        self._timers: dict[Hashable, tuple[datetime, asyncio.Task]] = {}
        self.due: set[Hashable] = set()
        """Timer keys that fired and wait for a pass."""
        self.fired: set[Hashable] = set()
        """Timer keys the current pass handles (taken from `due` as the pass starts, so a
        timer firing while the pass awaits its proposal is kept for the next one)."""
        self.passes = 0

    @property
    def store(self):
        return self.proposer.store

    def new_id(self) -> str:
        return new_id(self.rng)

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop.running

    def start(self) -> None:
        if self.running:
            return
        self.follower.open()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.follower.close()
        await self.on_stop()

    async def on_stop(self) -> None:
        """Subclass hook: cancel work of its own (rollouts)."""

    def kick(self) -> None:
        self.follower.kick()

    # -- timers -------------------------------------------------------------------------------

    def wake_at(self, key: Hashable, when: datetime) -> None:
        """Run a pass with `key` in `self.due` once `when` has come. An earlier or equal timer
        for the key is kept; a later one is replaced."""
        current = self._timers.get(key)
        if current is not None and current[0] <= when and not current[1].done():
            return
        if current is not None:
            current[1].cancel()
        delay = (when - self.clock()).total_seconds()
        self._timers[key] = (when, asyncio.create_task(self._timer(key, delay)))

    async def _timer(self, key: Hashable, delay: float) -> None:
        await self.sleep(delay)
        entry = self._timers.get(key)
        if entry is not None and entry[1] is asyncio.current_task():
            del self._timers[key]
        self.due.add(key)
        self.kick()

    def cancel_timer(self, key: Hashable) -> None:
        entry = self._timers.pop(key, None)
        if entry is not None:
            entry[1].cancel()

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        events: list[Event] | None = None  # None: full pass
        while True:
            try:
                await self.run_pass(events)
            except Exception:
                log.exception("%s pass failed; full pass after %.1fs", self.name, self.retry_delay)
                await self.sleep(self.retry_delay)
                events = None
                continue
            events = await self.follower.next()

    async def run_pass(self, events: list[Event] | None) -> None:
        """Build the pass's batch from a fresh view and propose it; rebuild on conflicts."""
        self.passes += 1
        self.fired, self.due = self.due, set()
        for attempt in range(ATTEMPTS):
            view = self.store.view()
            batch = Batch()
            self.reconcile(view, batch, events)
            if not batch:
                break
            try:
                for tx in batch.transactions(self.clock()):
                    await self.proposer.propose(tx)
            except StoreError as err:
                log.debug("%s pass conflicted (%s); rebuilding (attempt %d)", self.name, err, attempt + 1)
                continue
            self.committed()
            break
        else:
            log.warning("%s: pass kept conflicting; retrying on the next change", self.name)
            self.due |= self.fired
            self.kick()
        await self.after_pass()

    def committed(self) -> None:
        """Subclass hook: the batch built by the last `reconcile` is now in the store (book-
        keeping that must not happen twice when a conflicted pass is rebuilt goes here)."""

    async def after_pass(self) -> None:
        """Subclass hook run after each committed pass (start rollouts, arm timers)."""

    def reconcile(self, view: View, batch: Batch, events: list[Event] | None) -> None:
        raise NotImplementedError


def touched(events: Iterable[Event] | None, kind: str, key: Callable[[StoreObject], Hashable]) -> set:
    """Keys (e.g. service IDs) that events of `kind` touched, old and new versions both."""
    out: set = set()
    for e in events or ():
        if e.kind != kind:
            continue
        for obj in (e.old, e.new):
            if obj is not None:
                k = key(obj)
                if k is not None:
                    out.add(k)
    return out
