"""Following the store: watch some kinds, and start over whenever the stream was lost.

Every control loop that reacts to the store has the same three steps: take a watch, read the
store (with no `await` between the two, so no change falls in the gap), then handle events;
and when the watch is closed under it (`WatchOverflow` for a slow consumer, or a snapshot
restore), take a new watch and read everything again, because events were lost. Before this
module the orchestrators, the scheduler, the role manager, the dispatcher's node and task
watches and the CA's role watch each spelled that out, with slightly different ideas of which
errors meant "start over".

`StoreFollower.next()` hands back what to do next: a list of events, `[]` (kicked or timed
out: the consumer has something of its own to do), or `None`, meaning "the stream was lost and
a fresh watch is already open: re-read the store now". `follow()` is the whole loop for a
consumer that needs a full pass and a per-event handler, `repeat()` for one that recomputes
everything on each change.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from .errors import WatchClosed
from .watch import Event, Watcher

log = logging.getLogger("swarmkit_py.store.follow")


class StoreFollower:
    """One consumer's watch on `kinds` of `store` (a `MemoryStore`), re-opened when lost."""

    def __init__(
        self,
        store: Any,
        kinds: Iterable[str] | str | None,
        *,
        actions: Iterable[str] | None = None,
        name: str = "store watch",
    ) -> None:
        self.store = store
        self.kinds = kinds
        self.actions = actions
        self.name = name
        self._watcher: Watcher | None = None
        self._kick = asyncio.Event()
        self.resyncs = 0
        """How many times the stream was lost and re-opened."""

    def open(self) -> None:
        """Take a fresh watch (closing any old one). Read the store right after it, before
        the next `await`, and the read plus the stream miss nothing."""
        self.close()
        self._watcher = self.store.watch(self.kinds, actions=self.actions)

    def close(self) -> None:
        w, self._watcher = self._watcher, None
        if w is not None:
            w.close()

    def kick(self) -> None:
        """Make a waiting (or the next) `next()` return `[]` at once."""
        self._kick.set()

    def _lost(self, closed: WatchClosed) -> None:
        log.info("%s: watch closed (%s); re-reading the store", self.name, closed.reason)
        self.resyncs += 1
        self.open()

    def poll(self) -> list[Event] | None:
        """Whatever is buffered now, without waiting; None when the stream was lost."""
        w = self._require()
        try:
            return w.drain()
        except WatchClosed as closed:
            self._lost(closed)
            return None

    async def next(self, timeout: float | None = None) -> list[Event] | None:
        """The next events (at least one, plus everything buffered behind it); `[]` when
        kicked or after `timeout` seconds; None when the stream was lost (re-read the store:
        the new watch is already open)."""
        events = self.poll()
        kick = self._kick
        if events is None or events:
            return events
        if kick.is_set():
            kick.clear()
            return []
        w = self._require()
        try:
            first = await self._get_or_kick(w, kick, timeout)
        except WatchClosed as closed:
            self._lost(closed)
            return None
        if first is None:
            return []
        return [first, *w.drain()]

    async def _get_or_kick(self, w: Watcher, kick: asyncio.Event, timeout: float | None) -> Event | None:
        get = asyncio.ensure_future(w.get())
        woken = asyncio.ensure_future(kick.wait())
        try:
            done, _ = await asyncio.wait({get, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            get.cancel()
            woken.cancel()
        kick.clear()
        if get in done and not get.cancelled():
            return get.result()  # raises WatchClosed if that is how the stream ended
        return None

    def _require(self) -> Watcher:
        if self._watcher is None:
            self.open()
        assert self._watcher is not None
        return self._watcher

    async def repeat(
        self, run_pass: Callable[[], Any], *, every: float | None = None, settle: float = 0.0
    ) -> NoReturn:
        """Run until cancelled, level-triggered: `run_pass()` on opening, after every change
        (waiting `settle` seconds for the rest of a burst), after a lost stream, and at least
        every `every` seconds when given. A pass that raises is logged; the next wake-up
        tries again. For loops that recompute everything they own on each pass."""
        try:
            self.open()
            while True:
                try:
                    await _call(run_pass)
                except Exception:
                    log.exception("%s: pass failed; trying again on the next change", self.name)
                if await self.next(timeout=every) and settle:
                    await asyncio.sleep(settle)
                    self.poll()
        finally:
            self.close()

    async def follow(self, resync: Callable[[], Any], handle: Callable[[Event], Any]) -> NoReturn:
        """Run until cancelled: `resync()` on opening and after every lost stream,
        `handle(event)` for each event. Either may be a plain function or a coroutine
        function. The watch is closed when the loop ends."""
        try:
            self.open()
            await _call(resync)
            while True:
                events = await self.next()
                if events is None:
                    await _call(resync)
                    continue
                for event in events:
                    await _call(handle, event)
        finally:
            self.close()


async def _call(fn: Callable[..., Any], *args: Any) -> None:
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


__all__ = ["StoreFollower"]
