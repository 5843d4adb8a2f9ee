"""Decoding what clients send: query values and JSON bodies, with dockerd's rules and
messages that say what was wrong.

Bodies are bounded twice: aiohttp refuses to buffer more than the app's `client_max_size`
(413), and decoded JSON may not nest deeper than MAX_DEPTH - Python's json and the msgpack
encoder of the Raft log would otherwise overflow their recursion limits on a hostile body,
which must be a 400, not a 500.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import APIError, bad_request

MAX_BODY_BYTES = 1024 * 1024
MAX_DEPTH = 64
_UINT64_MAX = 2**64 - 1
_FALSE_STRINGS = {"", "0", "no", "false", "none"}

MAX_BODY_KEY = web.AppKey("max_body_bytes", int)
"""The app's body limit, also given to aiohttp as client_max_size."""


def bool_value(request: web.Request, name: str) -> bool:
    """dockerd's httputils.BoolValue: anything but ''/0/no/false/none (any case) is true."""
    return request.query.get(name, "").strip().lower() not in _FALSE_STRINGS


def uint_value(raw: str | None, what: str) -> int:
    """Parse `?version=` like Go's strconv.ParseUint, with dockerd's message
    (`invalid node version '': strconv.ParseUint: parsing "": invalid syntax`)."""
    raw = "" if raw is None else raw
    quoted = json.dumps(raw)
    if not raw.isascii() or not raw.isdigit():
        raise bad_request(
            f"invalid {what} version '{raw}': strconv.ParseUint: parsing {quoted}: invalid syntax"
        )
    value = int(raw)
    if value > _UINT64_MAX:
        raise bad_request(
            f"invalid {what} version '{raw}': strconv.ParseUint: parsing {quoted}: "
            "value out of range"
        )
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_INT_MIN = -(2**63)


def _parse_int(text: str) -> int:
    """Integers must fit Go's int64/uint64 (and msgpack, which carries them into the Raft
    log); dockerd would refuse a bigger one for a typed field too."""
    value = int(text)
    if not _INT_MIN <= value <= _UINT64_MAX:
        raise ValueError(f"number {text[:40]} is out of the 64-bit integer range")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def loads(text: str | bytes, what: str) -> Any:
    """JSON as Go reads it: no NaN/Infinity, bounded depth; errors as 400 messages."""
    try:
        value = json.loads(
            text, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float
        )
    except RecursionError:
        raise bad_request(f"invalid {what}: JSON nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise bad_request(f"invalid {what}: not UTF-8 ({exc.reason})") from None
    except ValueError as exc:
        raise bad_request(f"invalid {what}: {exc}") from None
    if _depth_exceeds(value, MAX_DEPTH):
        raise bad_request(f"invalid {what}: JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; an empty body is dockerd's EOF error."""
    length = request.content_length
    limit = request.app.get(MAX_BODY_KEY, MAX_BODY_BYTES)
    if length is not None and length > limit:
        raise APIError(413, f"request body too large: {length} bytes (limit {limit} bytes)")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise APIError(413, f"request body too large (limit {limit} bytes)") from None
    if not raw.strip():
        raise bad_request("got EOF while reading request body")
    return loads(raw, "JSON in request body")
