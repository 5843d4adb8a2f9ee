"""Long JSON lists written in chunks, with the event loop handed back between them, from the
JSON of each stored object encoded once per version.

Why: the API runs on the leader's one event loop, next to Raft, the dispatcher and the control
loops. `docker service ps` on a service with 100,000 tasks renders 100,000 task objects; done
in one go it held the loop for seconds, and every other caller (`service ls`, heartbeats)
waited behind it. Rendered `SLICE_S` of loop time at a time and sent slice by slice, a big
list costs its own caller the time it takes and everyone else a few milliseconds per slice.
A list rendered within one slice (the common case, and any list whose objects are cached:
joining 10,000 encodings takes about a millisecond) goes out as one ordinary response: each
handing back of the loop costs the caller a whole turn of everyone else's work, which during
a large fill was 50-200 ms per turn (issue 13), so a slice boundary is paid only for work done.

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
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

SLICE_S = 0.01
"""Loop time spent rendering a list before the rest is sent in a later turn."""
CACHE_BYTES = 64 * 1024 * 1024
"""What a cache may hold before it starts over (about 50,000 tasks' JSON)."""
PRUNE_BYTES = 1 << 20
"""A cache this size or larger is rid of deleted and replaced objects' entries before growing
further (then again each time it has doubled)."""


class RenderCache:
    """``encode(obj) -> bytes``: ``json.dumps(render(obj))``, reused while ``obj`` is the
    version ``store`` holds. Entries are replaced by newer versions; those of objects deleted
    or replaced since are dropped whenever the cache has doubled since the last look (at
    least `prune_bytes`), so it holds about what the store still has, not the history of a
    churning swarm (50 tasks a service made and removed left ~75 KB each time, kept until
    `max_bytes`); past ``max_bytes`` (a huge list) it is emptied and refills from use."""

    def __init__(self, store_of: Callable[[], Any], render: Callable[[Any], Any],
                 *, max_bytes: int = CACHE_BYTES, prune_bytes: int = PRUNE_BYTES) -> None:
        self._store_of = store_of
        self._render = render
        self._max_bytes = max_bytes
        self._prune_bytes = self._prune_at = prune_bytes
        self._entries: dict[str, tuple[int, bytes, str]] = {}
        self._bytes = 0
        self.hits = self.misses = 0

    def encoder(self) -> Callable[[Any], bytes]:
        """An encoder for one answer (it reads the store as it is when each item is encoded)."""
        store = self._store_of()

        def encode(obj: Any) -> bytes:
            version = obj.version.index
            entry = self._entries.get(obj.id)
            if entry is not None and entry[0] == version and store.holds(obj):
                self.hits += 1
                return entry[1]
            data = json.dumps(self._render(obj)).encode()
            if store.holds(obj):
                self.misses += 1
                self._put(store, obj.id, obj.kind, version, data)
            return data

        return encode

    def _put(self, store: Any, key: str, kind: str, version: int, data: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        if self._bytes + len(data) > self._prune_at:
            self._prune(store)
        if self._bytes + len(data) > self._max_bytes:
            self._entries.clear()
            self._bytes = 0
        self._entries[key] = (version, data, kind)
        self._bytes += len(data)

    def _prune(self, store: Any) -> None:
        """Drop the entries of objects the store no longer holds in that version."""
        version_of = store.version_of
        for key, (version, data, kind) in list(self._entries.items()):
            if version_of(kind, key) != version:
                del self._entries[key]
                self._bytes -= len(data)
        self._prune_at = max(self._prune_bytes, 2 * self._bytes)

    def __len__(self) -> int:
        return len(self._entries)


async def json_list(request: web.Request, items: Sequence[Any], encode: Callable[[Any], bytes],
                    *, headers: Callable[[web.StreamResponse], None] | None = None) -> web.StreamResponse:
    """The JSON array of ``encode(i)`` (each item's JSON as bytes): one response when it is
    rendered within `SLICE_S`, else streamed, the loop handed back after each slice.
    `headers(response)` stamps the API's common headers before a stream starts (afterwards
    they can no longer be set)."""
    first, done = _render_slice(items, 0, encode)
    if done == len(items):
        return web.Response(body=b"[" + b",".join(first) + b"]",
                            content_type="application/json", charset="utf-8")
    resp = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    if headers is not None:
        headers(resp)
    await resp.prepare(request)
    await resp.write(b"[" + b",".join(first))
    while done < len(items):
        await asyncio.sleep(0)
        part, done = _render_slice(items, done, encode)
        await resp.write(b"," + b",".join(part))
    await resp.write(b"]")
    await resp.write_eof()
    return resp


def _render_slice(items: Sequence[Any], start: int, encode: Callable[[Any], bytes]) -> tuple[list[bytes], int]:
    """Encode items from `start` until `SLICE_S` has passed (at least one); the encodings and
    the index after the last one."""
    clock = time.perf_counter
    until = clock() + SLICE_S
    out: list[bytes] = []
    i, n = start, len(items)
    while i < n:
        out.append(encode(items[i]))
        i += 1
        if clock() >= until:
            break
    return out, i
