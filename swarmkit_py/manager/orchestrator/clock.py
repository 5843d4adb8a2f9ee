"""Time for the loops: a wall clock and a sleep, both injectable.

The loops never read time or sleep on their own; they take `clock()` (aware UTC datetimes,
because the store's timestamps are such) and `sleep(seconds)`. In production these are
`utcnow` and `asyncio.sleep`. `ManualClock` stands in for both in tests and simulations, so a
5 s restart delay or a 24 h orphaning threshold is one `advance()` away and runs in
microseconds, deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from ...store.timefmt import utcnow

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

__all__ = ["Clock", "ManualClock", "Sleep", "asyncio_sleep", "utcnow"]


async def asyncio_sleep(seconds: float) -> None:
    await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """Virtual time: `clock()` reads it, `await clock.sleep(s)` waits until `advance()` moves
    time past the sleeper's deadline. Sleepers wake in deadline order, each seeing the clock
    at its own deadline, as they would in real time."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2024, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future]] = []
        self._seq = itertools.count()

    def __call__(self) -> datetime:
        return self.now

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + timedelta(seconds=seconds), next(self._seq), fut))
        await fut

    async def advance(self, seconds: float, *, settle: int = 50) -> None:
        """Move time forward, waking due sleepers one deadline at a time and letting the
        event loop run `settle` rounds after each so woken code can act before the next."""
        target = self.now + timedelta(seconds=seconds)
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue
            self.now = max(self.now, when)
            fut.set_result(None)
            await _settle(settle)
        self.now = target
        await _settle(settle)


async def _settle(rounds: int) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)
