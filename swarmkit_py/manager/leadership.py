"""Running control loops while this manager leads, and only then.

The decisions of the control plane (dispatcher, orchestrators, scheduler, role manager, the
CA's role watch) are made by the Raft leader alone; every manager builds them, and
`LeaderLoops` starts them when this member wins an election and stops them when it loses.

A new leader first waits until its store has applied everything committed before its term
(its no-op entry, through a read barrier), so loops never act on a stale view of the cluster.
A loop is anything with a plain `start()` and a coroutine `stop()` (the `Background` shape);
a coroutine function is wrapped in a `Background` by `add_task`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..background import Background
from ..raft.errors import NoQuorum

log = logging.getLogger("swarmkit_py.manager")


class Loop(Protocol):
    def start(self) -> None: ...

    async def stop(self) -> None: ...


class LeaderLoops:
    """Follows `raft`'s leadership and starts/stops the registered loops with it."""

    def __init__(self, raft, name: str) -> None:
        self.raft = raft
        self.name = name
        self._loops: list[tuple[str, Loop]] = []
        self.leading = False
        self.leading_term = 0
        """The term the running loops were started in."""
        self._changed = asyncio.Event()
        self._watch = Background(f"{name}-leadership", self._follow)

    def add(self, name: str, loop: Loop) -> None:
        """Register a loop (started in registration order, stopped in reverse)."""
        self._loops.append((name, loop))

    def add_task(self, name: str, fn: Callable[[], Awaitable[object]]) -> Background:
        """Register `fn()` to run as a supervised task while this manager leads."""
        task = Background(name, fn)
        self.add(name, task)
        return task

    def leader_changed(self) -> None:
        """Raft's leader-change callback."""
        self._changed.set()

    def start(self) -> None:
        self._changed.set()  # look once at start: we may already lead (a single manager)
        self._watch.start()

    async def stop(self) -> None:
        await self._watch.stop()
        await self._stop_loops()

    async def _follow(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self.raft.is_leader and self.leading and self.raft.term != self.leading_term:
                # Lost and won again before this loop ran (issue 9, hole 7b): the loops still
                # run on the old term's view, and another leader may have committed in
                # between. Stop them and start afresh, behind a new read barrier.
                log.info("%s: leadership changed hands and came back (term %d -> %d); "
                         "restarting control loops", self.name, self.leading_term, self.raft.term)
                await self._stop_loops()
            if self.raft.is_leader and not self.leading:
                term = self.raft.term
                try:
                    await self.raft.read_index(timeout=5.0)
                except NoQuorum:
                    self._changed.set()
                    await asyncio.sleep(0.05)
                    continue
                if not self.raft.is_leader or self.raft.term != term:
                    self._changed.set()  # look again at what leadership is now
                    continue
                self._start_loops(term)
                if not self.raft.is_leader or self.raft.term != term:
                    self._changed.set()  # it changed while the loops were starting
            elif not self.raft.is_leader and self.leading:
                log.info("%s: lost leadership; stopping control loops", self.name)
                await self._stop_loops()

    def _start_loops(self, term: int) -> None:
        self.leading = True
        self.leading_term = term
        log.info("%s: became leader (term %d); starting control loops", self.name, term)
        for name, loop in self._loops:
            try:
                loop.start()
            except Exception:
                log.exception("leader loop %s failed to start", name)

    async def _stop_loops(self) -> None:
        if not self.leading:
            return
        self.leading = False
        for name, loop in reversed(self._loops):
            try:
                await loop.stop()
            except Exception:
                log.exception("leader loop %s failed to stop", name)


__all__ = ["LeaderLoops", "Loop"]
