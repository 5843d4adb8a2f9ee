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
oldest generation's growth is what triggers full collections. Two changes:

- young collections less often (``THRESHOLDS``): an object has to survive 10,000 allocations
  to leave generation 0, so requests and connections mostly die young, where collecting them
  is cheap (a young collection looks at its own generation only);
- ``gc.freeze()`` after each full collection: what survived one is the long-lived state (the
  store, open sessions) and is not walked again by the next, so a full collection costs what
  was added since the last one, not the whole heap. Cycles among frozen objects that become
  garbage later (a session open at freeze time, closed since) are reclaimed when the frozen
  set is released (``gc.unfreeze()``) every ``refreeze_s`` and re-collected once: one full
  walk per period instead of one per 25 % of heap growth.

Tried and taken out (issue 13, round 4 in bench/README.md): starting full collections from a
timer at a quiet moment instead of on CPython's trigger. A 1,000-node fill still had one (a busy
process is sometimes quiet for a second), and a process busy for minutes (a 2,000-node join)
collected bigger batches later; both 2,000-node runs with it joined 4-6x slower.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger("swarmkit_py.gc")

THRESHOLDS = (10_000, 10, 10)


class GCPolicy:
    def __init__(self, *, refreeze_s: float = 900.0, thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
        self.refreeze_s = refreeze_s
        self.thresholds = thresholds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._released_at = 0.0
        self._previous: tuple[int, int, int] | None = None
        self.freezes = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._previous = gc.get_threshold()
        gc.set_threshold(*self.thresholds)
        self._released_at = time.monotonic()
        gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._previous is not None:
            gc.set_threshold(*self._previous)
        gc.unfreeze()

    def _on_gc(self, phase: str, info: dict) -> None:
        # Runs inside the collection, on whatever thread triggered it: only schedule.
        if phase == "stop" and info.get("generation") == 2 and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._after_full)
            except RuntimeError:  # the loop is closed: the agent is stopping
                pass

    def _after_full(self) -> None:
        now = time.monotonic()
        if now - self._released_at >= self.refreeze_s:
            # Release the frozen set: the next full collection walks everything once and
            # reclaims cycles that died among frozen objects since they were frozen.
            self._released_at = now
            gc.unfreeze()
            return
        gc.freeze()
        self.freezes += 1

    @property
    def frozen(self) -> int:
        return gc.get_freeze_count()
