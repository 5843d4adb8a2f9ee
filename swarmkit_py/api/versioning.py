"""API version negotiation, the way dockerd does it.

The CLI pings first, reads the `Api-Version` header (even from an error response), then
prefixes every path with `/v<min(server, client)>`. Clients pinned to another version send that
prefix instead, so every route is served both bare and under `/vX.Y/`, and a prefix outside
[MIN_API_VERSION, API_VERSION] is refused with dockerd's own messages.

We advertise 1.41 because that is the version whose shapes the notes recorded from a real
dockerd (20.10); newer request bodies were seen to be identical for this subset.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
VERSION_PREFIX = r"/v{version:[0-9][0-9.]*}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class VersionError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_version(text: str) -> tuple[int, ...]:
    parts = text.split(".")
    if not text or any(not p.isdigit() for p in parts):
        raise VersionError(f"client version {text} is invalid")
    return tuple(int(p) for p in parts)


def check_client_version(text: str | None) -> None:
    """Raise VersionError for a `/vX.Y` prefix outside what we serve; None means no prefix."""
    if text is None:
        return
    v = parse_version(text)
    if v > parse_version(API_VERSION):
        raise VersionError(
            f"client version {text} is too new. Maximum supported API version is {API_VERSION}"
        )
    if v < parse_version(MIN_API_VERSION):
        raise VersionError(
            f"client version {text} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )


def add_route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Register `handler` at `path` and at `/vX.Y{path}`. Other packages adding endpoints to the
    same app (services, tasks) use this too, so they get the same negotiation."""
    for full in (path, VERSION_PREFIX + path):
        if method == "GET":
            app.router.add_get(full, handler)  # GET routes answer HEAD too
        else:
            app.router.add_route(method, full, handler)


def public(handler: Handler) -> Handler:
    """Mark a handler as exempt from the authorization hook (only /_ping: clients must be able
    to negotiate before they can be told they are not allowed)."""
    handler.__swarmkit_public__ = True  # type: ignore[attr-defined]
    return handler


def is_public(handler: object) -> bool:
    return bool(getattr(handler, "__swarmkit_public__", False))
