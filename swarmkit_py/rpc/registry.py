"""Method name -> handler tables, one per server (or per client, for server pushes)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from .peer import PeerInfo

RequestHandler = Callable[[PeerInfo, Any], Awaitable[Any] | Any]
NotificationHandler = Callable[[PeerInfo, Any], Awaitable[None] | None]


class HandlerRegistry:
    """Requests and notifications are kept apart because they run differently.

    A request runs in its own task, so a slow one (a long poll, a proposal waiting for commit)
    never holds up the connection. A notification runs inline on the connection's read loop,
    in arrival order: that keeps Raft messages from one peer ordered and lets a slow consumer
    push back on the sender through TCP. Any handler may be a plain function instead of a
    coroutine function; for notifications that saves a coroutine per Raft message.
    """

    def __init__(self) -> None:
        self.requests: dict[str, RequestHandler] = {}
        self.inline: set[str] = set()
        self.notifications: dict[str, NotificationHandler] = {}

    def add_handler(self, method: str, handler: RequestHandler, *, inline: bool = False) -> None:
        """``inline``: ``handler`` is a plain function that returns at once, with the answer or
        with an ``asyncio.Future`` of it; it is called on the connection's read loop and
        answered from the future's callback, without a task per request. For hot paths (a
        write that only queues a Raft proposal), where a task per request costs more than
        the work itself."""
        if method in self.requests:
            raise ValueError(f"a request handler for {method!r} is already registered")
        if inline and inspect.iscoroutinefunction(handler):
            raise ValueError(f"inline handler for {method!r} must be a plain function, not a coroutine function")
        self.requests[method] = handler
        if inline:
            self.inline.add(method)

    def add_notification_handler(self, method: str, handler: NotificationHandler) -> None:
        if method in self.notifications:
            raise ValueError(f"a notification handler for {method!r} is already registered")
        self.notifications[method] = handler

    def remove(self, method: str) -> None:
        self.requests.pop(method, None)
        self.inline.discard(method)
        self.notifications.pop(method, None)
