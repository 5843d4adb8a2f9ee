"""Long JSON lists written in chunks, with the event loop handed back between them.

Why: the API runs on the leader's one event loop, next to Raft, the dispatcher and the control
loops. `docker service ps` on a service with 100,000 tasks renders 100,000 task objects; done
in one go it held the loop for seconds, and every other caller (`service ls`, heartbeats)
waited behind it. Rendered and sent `CHUNK` objects at a time, a big list costs its own
caller the time it takes and everyone else a few milliseconds per chunk. Short lists (the
common case) still go out as one ordinary response.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

CHUNK = 500


async def json_list(request: web.Request, items: Sequence[Any], render: Callable[[Any], Any],
                    *, headers: Callable[[web.StreamResponse], None] | None = None,
                    chunk: int = CHUNK) -> web.StreamResponse:
    """`[render(i) for i in items]` as a JSON response; chunked (and streamed) when long.
    `headers(response)` stamps the API's common headers before a stream starts (afterwards
    they can no longer be set)."""
    if len(items) <= chunk:
        return web.json_response([render(i) for i in items])
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    if headers is not None:
        headers(resp)
    await resp.prepare(request)
    await resp.write(b"[")
    for start in range(0, len(items), chunk):
        part = json.dumps([render(i) for i in items[start : start + chunk]])[1:-1]
        await resp.write((("," if start else "") + part).encode())
        await asyncio.sleep(0)
    await resp.write(b"]")
    await resp.write_eof()
    return resp
