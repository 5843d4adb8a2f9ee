"""The garbage collector's settings for a long-running agent.

CPython frees most objects by reference counting; its cyclic collector exists for reference
cycles, and a *full* collection walks every tracked object with the whole process stopped
(the GIL held: no other thread runs either). A manager's store is a few hundred thousand
tracked objects at 1,000 nodes and 10,000 tasks (each pydantic model is an object, its
``__dict__`` and its fields-set), plus every connection's asyncio objects: measured on the
leader during a 1,000-node join, full collections every ~15 s took 0.6-3 s of wall time each on
the loaded 2-core machine, each one longer than Raft's election timeout (issue 13).

With the defaults (700, 10, 10) a busy server promotes short-lived objects (a request's
futures, a closed connection's cycle) to the oldest generation after a few milliseconds, and the
oldest generation's growth is what triggers full collections. Three changes:

- young collections less often (``THRESHOLDS``): an object has to survive 10,000 allocations
  to leave generation 0, so requests and connections mostly die young, where collecting them
  is cheap (a young collection looks at its own generation only);
- ``gc.freeze()`` after each full collection: what survived one is the long-lived state (the
  store, open sessions) and is not walked again by the next, so a full collection costs what
  was added since the last one, not the whole heap. Cycles among frozen objects that become
  garbage later (a session open at freeze time, closed since) are reclaimed when the frozen
  set is released (``gc.unfreeze()``) every ``refreeze_s`` and re-collected once: one full
  walk per period instead of one per 25 % of heap growth;
- optionally (``defer_full=True``; agents do not use it, see below), full collections are not
  started by allocations but by this policy, at a quiet moment:
  CPython starts one when the oldest generation has grown by a quarter, which during a
  10,000-task fill is exactly when the store grows fastest, and the leader's loop (the API,
  Raft, heartbeats) stood still for the 0.5-1.1 s it took, on top of the fill (issue 13). Here
  a full collection is *due* on the same rule (the heap, counted in allocated blocks, grew by
  ``grow`` since the last one), and is run once the process has been quiet for a check
  (``check_s``: its own timer on time, the process using under ``busy_cpu`` of a core);
  a busy spell defers it at most ``max_defer_s`` (longer than a 10,000-task fill), or until
  the heap has grown ``force_growth`` times over, and then it runs anyway. Deferring costs
  memory only for cyclic garbage that outlived the young collections (which still run), and
  for at most that long; the store's own growth is not garbage and stays either way.
  Measured (issue 13, round 4 in bench/README.md), it did not pay: a 1,000-node fill still
  had one full collection (0.35-0.42 s, 0.54 s before), since a busy process is sometimes
  quiet for a second, and a process that is busy for minutes (a 2,000-node join) collects
  bigger batches after each 120 s; both 2,000-node runs with it had elections during the join
  and joined 4-6x slower than the last run without it (load and elections may explain part:
  not proven either way). So agents and the simulated fleet keep CPython's trigger, frozen
  after each collection (``defer_full=False``, the default).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import Callable

log = logging.getLogger("swarmkit_py.gc")

THRESHOLDS = (10_000, 10, 10)
NEVER = 1 << 30
"""The oldest generation's threshold while the policy runs: no automatic full collection."""


class GCPolicy:
    def __init__(self, *, refreeze_s: float = 900.0, thresholds: tuple[int, int, int] = THRESHOLDS,
                 check_s: float = 1.0, busy_cpu: float = 0.5, grow: float = 0.25,
                 min_growth_blocks: int = 200_000, max_defer_s: float = 120.0, force_growth: float = 3.0,
                 blocks: Callable[[], int] = sys.getallocatedblocks, defer_full: bool = False) -> None:
        self.refreeze_s = refreeze_s
        self.thresholds = thresholds
        self.check_s = check_s
        self.busy_cpu = busy_cpu
        self.grow = grow
        self.min_growth_blocks = min_growth_blocks
        self.max_defer_s = max_defer_s
        self.force_growth = force_growth
        self.defer_full = defer_full
        self._loop: asyncio.AbstractEventLoop | None = None
        self._heap = blocks
        """The heap's size: pymalloc's allocated blocks (O(1), unlike counting objects)."""
        self._task: asyncio.Task | None = None
        self._released_at = 0.0
        self._previous: tuple[int, int, int] | None = None
        self._blocks = 0
        self._due_since: float | None = None
        self.freezes = 0
        self.collections = 0
        """Full collections this policy ran."""
        self.deferred = 0
        """Checks at which a due full collection waited for a quieter moment."""
        self.forced = 0
        """Full collections run although the process was busy (deferred too long)."""

    def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._previous = gc.get_threshold()
        self._released_at = time.monotonic()
        self._blocks = self._heap()
        if self.defer_full:
            gc.set_threshold(self.thresholds[0], self.thresholds[1], NEVER)
            self._task = loop.create_task(self._run(), name="gc-policy")
        else:
            gc.set_threshold(*self.thresholds)
            gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._previous is not None:
            gc.set_threshold(*self._previous)
        gc.unfreeze()

    def _on_gc(self, phase: str, info: dict) -> None:
        # defer_full=False: CPython started a full collection; freeze its survivors once it
        # is over (this runs inside the collection, on whatever thread triggered it: schedule)
        if phase == "stop" and info.get("generation") == 2 and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._after_full)
            except RuntimeError:  # the loop is closed: stopping
                pass

    def _after_full(self) -> None:
        now = time.monotonic()
        if now - self._released_at >= self.refreeze_s:
            self._released_at = now
            gc.unfreeze()  # the next full collection walks everything once
            return
        gc.freeze()
        self.freezes += 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0, cpu0 = loop.time(), time.process_time()
            await asyncio.sleep(self.check_s)
            span = loop.time() - t0
            late = span - self.check_s
            cpu = (time.process_time() - cpu0) / span if span > 0 else 1.0
            try:
                self.check(busy=late > 0.05 or cpu > self.busy_cpu, now=time.monotonic())
            except Exception:  # a bookkeeping slip must not end collections for good
                log.exception("garbage collection policy check failed")

    def due(self) -> bool:
        """A full collection is due: the heap grew by `grow` since the last one (at least
        `min_growth_blocks`), or the frozen set is due for release."""
        grown = self._heap() - self._blocks
        return (grown >= max(self.min_growth_blocks, self.grow * self._blocks)
                or time.monotonic() - self._released_at >= self.refreeze_s)

    def check(self, *, busy: bool, now: float) -> bool:
        """Collect now if a full collection is due and the process is quiet, or has waited
        for that long enough; returns whether it collected."""
        if not self.due():
            self._due_since = None
            return False
        if self._due_since is None:
            self._due_since = now
        overgrown = self._heap() >= (1 + self.force_growth) * self._blocks + self.min_growth_blocks
        if busy and not overgrown and now - self._due_since < self.max_defer_s:
            self.deferred += 1
            return False
        if busy:
            self.forced += 1
        self.collect(now)
        return True

    def collect(self, now: float | None = None) -> None:
        """One full collection, then freeze its survivors (after releasing the frozen set
        once every `refreeze_s`, so cycles that died among them are reclaimed too)."""
        now = time.monotonic() if now is None else now
        if now - self._released_at >= self.refreeze_s:
            self._released_at = now
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.collections += 1
        self.freezes += 1
        self._blocks = self._heap()
        self._due_since = None

    @property
    def frozen(self) -> int:
        return gc.get_freeze_count()
