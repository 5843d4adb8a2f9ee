"""Long JSON lists written in chunks, with the event loop handed back between them, from the
JSON of each stored object encoded once per version.

Why: the API runs on the leader's one event loop, next to Raft, the dispatcher and the control
loops. `docker service ps` on a service with 100,000 tasks renders 100,000 task objects; done
in one go it held the loop for seconds, and every other caller (`service ls`, heartbeats)
waited behind it. Rendered and sent `CHUNK` objects at a time, a big list costs its own
caller the time it takes and everyone else a few milliseconds per chunk. Short lists (the
common case) still go out as one ordinary response.

And most of that rendering was done again and again for objects that had not changed: during
a 10,000-task fill at 1,000 nodes, `/tasks` answers (the CLI's convergence poll asks every
200 ms) were 25 % of the leader's CPU, most of it pydantic's `model_dump` and RFC 3339
timestamps of the same task versions (py-spy, issue 13). A stored object never changes in
place (an update stores a new object whose `Version.Index` is the Raft index that wrote it),
so `RenderCache` keeps each object's encoded JSON keyed by its id and version and answers
a list by joining bytes. Only the objects the store holds are cached: a copy made for one
answer (a manager with its live `ManagerStatus`) is rendered each time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

CHUNK = 500
CACHE_BYTES = 64 * 1024 * 1024
"""What a cache may hold before it starts over (about 50,000 tasks' JSON)."""


class RenderCache:
    """``encode(obj) -> bytes``: ``json.dumps(render(obj))``, reused while ``obj`` is the
    version ``store`` holds. Entries are replaced by newer versions; when the cache exceeds
    ``max_bytes`` (deleted objects, a huge list) it is emptied and refills from use."""

    def __init__(self, store_of: Callable[[], Any], render: Callable[[Any], Any],
                 *, max_bytes: int = CACHE_BYTES) -> None:
        self._store_of = store_of
        self._render = render
        self._max_bytes = max_bytes
        self._entries: dict[str, tuple[int, bytes]] = {}
        self._bytes = 0
        self.hits = self.misses = 0

    def encoder(self) -> Callable[[Any], bytes]:
        """An encoder for one answer (it reads the store as it is when each item is encoded)."""
        store = self._store_of()

        def encode(obj: Any) -> bytes:
            version = obj.version.index
            entry = self._entries.get(obj.id)
            if entry is not None and entry[0] == version and store.view().get(obj.kind, obj.id) is obj:
                self.hits += 1
                return entry[1]
            data = json.dumps(self._render(obj)).encode()
            if store.view().get(obj.kind, obj.id) is obj:
                self.misses += 1
                self._put(obj.id, version, data)
            return data

        return encode

    def _put(self, key: str, version: int, data: bytes) -> None:
        old = self._entries.get(key)
        if old is not None:
            self._bytes -= len(old[1])
        if self._bytes + len(data) > self._max_bytes:
            self._entries.clear()
            self._bytes = 0
        self._entries[key] = (version, data)
        self._bytes += len(data)

    def __len__(self) -> int:
        return len(self._entries)


async def json_list(request: web.Request, items: Sequence[Any], encode: Callable[[Any], bytes],
                    *, headers: Callable[[web.StreamResponse], None] | None = None,
                    chunk: int = CHUNK) -> web.StreamResponse:
    """The JSON array of ``encode(i)`` (each item's JSON as bytes); chunked (and streamed)
    when long. `headers(response)` stamps the API's common headers before a stream starts
    (afterwards they can no longer be set)."""
    if len(items) <= chunk:
        return web.Response(body=b"[" + b",".join(encode(i) for i in items) + b"]",
                            content_type="application/json", charset="utf-8")
    resp = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    if headers is not None:
        headers(resp)
    await resp.prepare(request)
    await resp.write(b"[")
    for start in range(0, len(items), chunk):
        part = b",".join(encode(i) for i in items[start : start + chunk])
        await resp.write((b"," if start else b"") + part)
        await asyncio.sleep(0)
    await resp.write(b"]")
    await resp.write_eof()
    return resp
