"""Typed keys for what handlers find on the app (aiohttp's AppKey avoids string collisions
with keys other packages may add when they extend the same app)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from ..manager.controlapi import ControlAPI
from .versioning import API_VERSION

Authorize = Callable[[web.Request], Awaitable[None] | None]


@dataclass(frozen=True)
class ServerInfo:
    engine_version: str
    hostname: str


CONTROL = web.AppKey("control", ControlAPI)
SERVER = web.AppKey("server", ServerInfo)


def common_headers(response: web.StreamResponse, server: ServerInfo) -> None:
    """dockerd's headers, on every response (errors included: the CLI negotiates from
    `Api-Version` even when the ping fails)."""
    response.headers["Api-Version"] = API_VERSION
    response.headers["Docker-Experimental"] = "false"
    response.headers["Ostype"] = "linux"
    response.headers["Server"] = f"swarmkit-py/{server.engine_version} (linux)"
