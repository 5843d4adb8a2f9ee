"""How long the event loop is held, and by what.

Everything a manager does shares one asyncio loop (DESIGN.md): a callback that runs for a
second delays every timer, heartbeat and Raft message by a second. This watch measures that
lag and, when it passes a threshold, says where the loop was held: a beat callback rescheduled
every ``period`` records when the loop last turned; a daemon thread looks every
``sample_every`` seconds and, while the loop is late, samples the loop thread's Python stack
(``sys._current_frames``, the same view py-spy takes from outside). When the loop turns
again the stall is logged once with the stack seen most often, and counted in a histogram that
``/metrics`` exports.

asyncio's debug mode logs slow callbacks too, but only as "Executing <Handle ...> took 1.2 s"
(no stack inside the callback) and at a cost to every callback (it records where each handle
was created); aiodebug's hang inspector dumps stacks to files and has not been maintained since
2022. This is about 100 lines and costs one callback per ``period`` plus a thread that sleeps.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import sys
import threading
import time

from .histogram import Histogram

log = logging.getLogger("swarmkit_py.loopwatch")

_HERE = __file__.rsplit("/", 2)[0] + "/"  # the swarmkit_py package directory


def _where(frame, depth: int = 6) -> str:
    """The innermost frames of this package (plus the very innermost frame, where the time
    is actually spent, e.g. inside pydantic or ssl), innermost first."""
    parts: list[str] = []
    inner = frame
    f = frame
    while f is not None and len(parts) < depth:
        code = f.f_code
        if code.co_filename.startswith(_HERE):
            parts.append(f"{code.co_filename[len(_HERE):]}:{f.f_lineno} {code.co_name}")
        f = f.f_back
    if inner is not None and not inner.f_code.co_filename.startswith(_HERE):
        parts.insert(0, f"{inner.f_code.co_filename.rsplit('/', 1)[-1]}:{inner.f_lineno} {inner.f_code.co_name}")
    return " < ".join(parts) or "(outside swarmkit_py)"


class LoopWatch:
    """Call `start()` from inside the running loop; `stop()` ends the thread."""

    BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

    def __init__(self, *, period: float = 0.05, report_after: float = 0.5, sample_every: float = 0.02) -> None:
        self.period = period
        self.report_after = report_after
        self.sample_every = sample_every
        self.stalls = Histogram(self.BOUNDS)
        """Holds of 50 ms or more, by length."""
        self.max_s = 0.0
        self._beat = time.monotonic()
        self._beat_cpu = 0.0
        self._samples: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._handle: asyncio.TimerHandle | None = None
        # Garbage collections stop the world (and the sampling thread, which needs the GIL):
        # they are timed here, so a stall they explain says so; full ones are counted.
        self.gc_full = 0
        self.gc_full_s = 0.0
        self._gc_t0 = 0.0
        self._gc_in_stall = 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif self._gc_t0:
            took = time.perf_counter() - self._gc_t0
            self._gc_t0 = 0.0
            self._gc_in_stall += took
            if info.get("generation") == 2:
                self.gc_full += 1
                self.gc_full_s += took

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat, self._beat_cpu = time.monotonic(), time.thread_time()
        self._handle = self._loop.call_later(self.period, self._on_beat)
        threading.Thread(target=self._watch, name="loopwatch", daemon=True).start()

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()

    def _on_beat(self) -> None:
        now = time.monotonic()
        cpu = time.thread_time()
        held = now - self._beat - self.period
        held_cpu = cpu - self._beat_cpu
        self._beat, self._beat_cpu = now, cpu
        if held >= self.BOUNDS[0]:
            self._record(held, held_cpu)
        elif self._samples:  # taken during a shorter hold than reported: not this one's
            with self._lock:
                self._samples.clear()
        self._gc_in_stall = 0.0
        if not self._stop.is_set():
            self._handle = self._loop.call_later(self.period, self._on_beat)

    def _record(self, held: float, cpu: float) -> None:
        self.stalls.observe(held)
        self.max_s = max(self.max_s, held)
        with self._lock:
            top = self._samples.most_common(2)
            self._samples.clear()
        if held >= self.report_after:
            where = "; ".join(f"{w} ({n} samples)" for w, n in top) or "no sample"
            gc_note = f", garbage collection {self._gc_in_stall * 1000:.0f} ms" if self._gc_in_stall > 0.01 else ""
            # CPU well below the hold: the process was not running (a loaded machine), not busy
            log.warning("event loop held for %.0f ms (loop thread CPU %.0f ms%s): %s",
                        held * 1000, cpu * 1000, gc_note, where)

    def _watch(self) -> None:
        while not self._stop.wait(self.sample_every):
            if time.monotonic() - self._beat - self.period < self.report_after / 2:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is not None:
                w = _where(frame)
                with self._lock:
                    self._samples[w] += 1
            del frame
