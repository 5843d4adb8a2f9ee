"""Method name -> handler tables, one per server (or per client, for server pushes)."""

from __future__ import annotations

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
        self.notifications: dict[str, NotificationHandler] = {}

    def add_handler(self, method: str, handler: RequestHandler) -> None:
        if method in self.requests:
            raise ValueError(f"a request handler for {method!r} is already registered")
        self.requests[method] = handler

    def add_notification_handler(self, method: str, handler: NotificationHandler) -> None:
        if method in self.notifications:
            raise ValueError(f"a notification handler for {method!r} is already registered")
        self.notifications[method] = handler

    def remove(self, method: str) -> None:
        self.requests.pop(method, None)
        self.notifications.pop(method, None)
