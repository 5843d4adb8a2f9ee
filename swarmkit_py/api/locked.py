"""The API of a manager that cannot serve the cluster's state: locked (auto-lock; it answers
nothing but the unlock call and what a client needs to get there, as dockerd does for a swarm
that restarted with auto-lock on), or with its Raft member stopped by a full disk
(`make_unavailable_app`: every call but /_ping, /version and /info is a 503 that says why and
what to do, instead of a refused connection or a misleading "not a manager").

- /_ping, /version: so the CLI can negotiate;
- GET /info with `Swarm.LocalNodeState: "locked"`: `docker swarm unlock` reads it first and asks
  for the key only on a locked node; `docker info` shows "Swarm: locked";
- POST /swarm/unlock {"UnlockKey": "SWMKEY-1-..."}: a malformed key is a 400 ("invalid key
  string"), a wrong one a 401 with dockerd's "swarm could not be unlocked: invalid key provided"
  and nothing more (no hint of the right key, no difference between "close" and "far");
- anything else: 503 with dockerd's errSwarmLocked message, which says what to do.

The same middleware as the full API (version negotiation, the authorization hook, JSON errors),
so the locked listener is exactly as protected as the unlocked one.
"""

from __future__ import annotations

import platform
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..raft.storage import SWARM_LOCKED_MESSAGE, InvalidUnlockKeyError
from .app import AUTHORIZE, docker_middleware
from .errors import APIError
from .keys import SERVER, Authorize, ServerInfo
from .params import MAX_BODY_KEY, read_json
from .routes_system import ping, version
from .versioning import VERSION_PREFIX, add_route

Unlock = Callable[[str], Awaitable[None]]
"""Checks the key text and unlocks, or raises InvalidUnlockKeyError."""

UNLOCK = web.AppKey("unlock", object)
SWARM_INFO = web.AppKey("swarm_info", dict)
_BODY_LIMIT = 64 * 1024


async def locked_info(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    return web.json_response(
        {
            "ID": request.app[SWARM_INFO].get("NodeID", ""),
            "Name": server.hostname,
            "ServerVersion": server.engine_version,
            "OperatingSystem": platform.system(),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "KernelVersion": platform.release(),
            "Swarm": request.app[SWARM_INFO],
            "Warnings": None,
        }
    )


async def unlock(request: web.Request) -> web.Response:
    body = await read_json(request)
    key = body.get("UnlockKey") if isinstance(body, dict) else None
    if not isinstance(key, str):
        raise APIError(400, 'invalid unlock request: expected {"UnlockKey": "SWMKEY-1-..."}')
    try:
        await request.app[UNLOCK](key)
    except InvalidUnlockKeyError as exc:
        message = str(exc)
        raise APIError(400 if message.startswith("invalid key string") else 401, message) from None
    return web.Response(status=200)


REFUSAL = web.AppKey("refusal", str)


async def refuse(request: web.Request) -> web.Response:
    raise APIError(503, request.app[REFUSAL])


def _refusing_app(refusal: str, state: str, *, node_id: str, node_addr: str, engine_version: str,
                  hostname: str, authorize: Authorize | None, routes=()) -> web.Application:
    app = web.Application(middlewares=[docker_middleware], client_max_size=_BODY_LIMIT)
    app[SERVER] = ServerInfo(engine_version=engine_version, hostname=hostname)
    app[MAX_BODY_KEY] = _BODY_LIMIT
    app[REFUSAL] = refusal
    swarm: dict[str, Any] = {
        "NodeID": node_id,
        "NodeAddr": node_addr,
        "LocalNodeState": state,
        "ControlAvailable": False,
        "Error": "" if state == "locked" else refusal,
        "RemoteManagers": None,
    }
    app[SWARM_INFO] = swarm
    if authorize is not None:
        app[AUTHORIZE] = authorize
    add_route(app, "GET", "/_ping", ping)
    add_route(app, "GET", "/version", version)
    add_route(app, "GET", "/info", locked_info)
    for method, path, handler in routes:
        add_route(app, method, path, handler)
    for full in (VERSION_PREFIX + "/{tail:.*}", "/{tail:.*}"):
        app.router.add_route("*", full, refuse)
    return app


def make_locked_app(
    unlock_fn: Unlock,
    *,
    node_id: str,
    node_addr: str,
    engine_version: str,
    hostname: str,
    authorize: Authorize | None = None,
) -> web.Application:
    app = _refusing_app(SWARM_LOCKED_MESSAGE, "locked", node_id=node_id, node_addr=node_addr,
                        engine_version=engine_version, hostname=hostname, authorize=authorize,
                        routes=[("POST", "/swarm/unlock", unlock)])
    app[UNLOCK] = unlock_fn
    return app


def make_unavailable_app(message: str, **ident: Any) -> web.Application:
    """Every cluster call refused with 503 `message`; `docker info` shows Swarm: error and
    the message. `ident`: node_id, node_addr, engine_version, hostname, authorize (as for
    make_locked_app)."""
    ident.setdefault("authorize", None)
    return _refusing_app(message, "error", **ident)
