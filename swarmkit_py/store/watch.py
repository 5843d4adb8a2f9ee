"""Watch streams: how the control loops hear about changes (one writes, the others watch).

Apply runs on the event loop thread and must never wait for a consumer, or one stuck
orchestrator would stall Raft for the whole cluster. So each watcher has a bounded buffer and
delivery is a non-blocking append; a watcher whose buffer is full is closed with
`WatchOverflow` (as swarmkit closes a full limit queue) and its consumer must re-read the
store and watch again. Events of a transaction are delivered together, after the whole
transaction is applied, in op order.

The objects in events are the store's own (no copies, for speed): treat them as read-only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import WatchClosed, WatchOverflow
from .objects import KINDS, StoreObject

DEFAULT_WATCH_LIMIT = 65536
COMMIT = "commit"
_OWN_CLOSE = "closed"


@dataclass(frozen=True, slots=True)
class Event:
    """`old` is None for creates, `new` is None for deletes. A commit marker (only for
    watchers that asked for them) has kind and action "commit" and no objects; it tells a
    batching consumer that a transaction ended."""

    kind: str
    action: str
    old: StoreObject | None
    new: StoreObject | None
    index: int

    @property
    def obj(self) -> StoreObject | None:
        """The object as it is now (or was, for a delete)."""
        return self.new if self.new is not None else self.old

    @property
    def is_commit(self) -> bool:
        return self.action == COMMIT


EventFilter = Callable[[Event], bool]


class Watcher:
    """One consumer's stream. `async for event in watcher`, or `await watcher.get()`.

    Ends with `WatchClosed` from `get()` (iteration stops quietly only after the owner's own
    `close()`)."""

    def __init__(
        self,
        hub: WatchHub,
        kinds: frozenset[str] | None,
        actions: frozenset[str] | None,
        filter: EventFilter | None,
        limit: int,
        commits: bool,
    ) -> None:
        self._hub = hub
        self.kinds = kinds
        self.actions = actions
        self.filter = filter
        self.limit = limit
        self.commits = commits
        self._buffer: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._closed: WatchClosed | None = None

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def error(self) -> WatchClosed | None:
        """Why the stream ended, or None while it is open."""
        return self._closed

    def __len__(self) -> int:
        return len(self._buffer)

    def _wants(self, event: Event) -> bool:
        if event.is_commit:
            return self.commits
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.actions is not None and event.action not in self.actions:
            return False
        return self.filter is None or bool(self.filter(event))

    def _offer(self, events: list[Event]) -> None:
        if self._closed is not None:
            return
        try:
            wanted = [e for e in events if self._wants(e)]
        except Exception as exc:  # a broken filter must not break apply
            self._close(WatchClosed(f"watch filter raised {type(exc).__name__}: {exc}"))
            return
        if not wanted:
            return
        if len(self._buffer) + len(wanted) > self.limit:
            self._close(
                WatchOverflow(
                    f"watch closed: consumer too slow, more than {self.limit} events pending; "
                    "re-read the store and watch again"
                )
            )
            return
        self._buffer.extend(wanted)
        self._wakeup.set()

    def _close(self, reason: WatchClosed, *, keep_buffer: bool = False) -> None:
        if self._closed is not None:
            return
        self._closed = reason
        if not keep_buffer:
            self._buffer.clear()  # the stream has a gap; stale events would only mislead
        self._wakeup.set()
        self._hub._discard(self)

    def close(self) -> None:
        """Stop receiving; events already buffered can still be drained."""
        self._close(WatchClosed(_OWN_CLOSE), keep_buffer=True)

    def get_nowait(self) -> Event | None:
        """The next buffered event, or None if there is none yet."""
        if self._buffer:
            return self._buffer.popleft()
        if self._closed is not None:
            raise self._closed
        return None

    def drain(self) -> list[Event]:
        """Everything buffered now (for synchronous consumers and tests)."""
        out = list(self._buffer)
        self._buffer.clear()
        if not out and self._closed is not None and self._closed.reason != _OWN_CLOSE:
            raise self._closed
        return out

    async def get(self) -> Event:
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._closed is not None:
                raise self._closed
            self._wakeup.clear()
            await self._wakeup.wait()

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except WatchClosed as exc:
            if exc.reason == _OWN_CLOSE:
                raise StopAsyncIteration from None
            raise

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WatchHub:
    """The set of live watchers of one store."""

    def __init__(self) -> None:
        self._watchers: dict[Watcher, None] = {}

    def watch(
        self,
        kinds: Iterable[str | type[StoreObject]] | str | type[StoreObject] | None = None,
        *,
        actions: Iterable[str] | None = None,
        filter: EventFilter | None = None,
        limit: int = DEFAULT_WATCH_LIMIT,
        commits: bool = False,
    ) -> Watcher:
        kind_set = None if kinds is None else frozenset(_kind_names(kinds))
        action_set = None if actions is None else frozenset(actions)
        if limit < 1:
            raise ValueError("watch limit must be at least 1")
        w = Watcher(self, kind_set, action_set, filter, limit, commits)
        self._watchers[w] = None
        return w

    def publish(self, events: list[Event]) -> None:
        for w in list(self._watchers):
            w._offer(events)

    def close_all(self, reason: str) -> None:
        for w in list(self._watchers):
            w._close(WatchClosed(reason))

    def _discard(self, w: Watcher) -> None:
        self._watchers.pop(w, None)

    def __len__(self) -> int:
        return len(self._watchers)


def _kind_names(kinds: Iterable[str | type[StoreObject]] | str | type[StoreObject]) -> list[str]:
    if isinstance(kinds, str) or isinstance(kinds, type):
        kinds = [kinds]
    names = []
    for k in kinds:
        name = k if isinstance(k, str) else k.kind
        if name not in KINDS:
            raise ValueError(f"unknown object kind {name!r}")
        names.append(name)
    return names
