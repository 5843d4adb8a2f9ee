"""Typed keys for what handlers find on the app (aiohttp's AppKey avoids string collisions
with keys other packages may add when they extend the same app)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from ..manager.controlapi import ControlAPI

Authorize = Callable[[web.Request], Awaitable[None] | None]


@dataclass(frozen=True)
class ServerInfo:
    engine_version: str
    hostname: str


CONTROL = web.AppKey("control", ControlAPI)
SERVER = web.AppKey("server", ServerInfo)
