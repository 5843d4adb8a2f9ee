"""GET /events: `docker events` for a swarm manager (node, service, network, secret and
config events; see manager/events.py), streamed as one JSON object per line, as dockerd
does. `since` replays what this manager still remembers; `until` ends the stream."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from ..manager.events import EventLog, event_filter
from ..store.timefmt import parse_rfc3339
from .errors import bad_request
from .filters import parse_filters
from .keys import CONTROL, SERVER, common_headers
from .versioning import add_route

EVENTS = web.AppKey("events", EventLog)


def parse_time(raw: str | None, name: str) -> int | None:
    """dockerd's forms: unix seconds with optional fraction (`1700000000.000000000`, what
    the CLI sends for `--since 10m` or a date) or an RFC 3339 date. Returns ns."""
    if raw is None or raw == "":
        return None
    secs, _, frac = raw.partition(".")
    if secs.lstrip("-").isdigit() and (not frac or frac.isdigit()):
        return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])
    try:
        return int(parse_rfc3339(raw).timestamp() * 1_000_000_000)
    except ValueError:
        raise bad_request(f"invalid value for {name}: {raw!r} is neither unix seconds nor "
                          "an RFC 3339 date") from None


async def events(request: web.Request) -> web.StreamResponse:
    match = event_filter(parse_filters(request.query.get("filters")), bad_request)
    since = parse_time(request.query.get("since"), "since")
    until = parse_time(request.query.get("until"), "until")
    if since is not None and until is not None and since > until:
        raise bad_request("`since` time is after `until` time")
    log = request.app[EVENTS]
    queue = log.subscribe()  # before the replay, so nothing falls between the two
    try:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        common_headers(response, request.app[SERVER])
        await response.prepare(request)
        last = 0
        if since is not None:
            for ev in log.past(since, until):
                if match(ev):
                    await response.write(json.dumps(ev.to_api()).encode() + b"\n")
                last = ev.seq
        while True:
            timeout = None
            if until is not None:
                timeout = (until - time.time_ns()) / 1e9
                if timeout <= 0:
                    break
            try:
                ev = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                break
            if ev is None:  # too slow a reader: cut off, as a full watch queue is
                break
            if ev.seq <= last or (until is not None and ev.time_nano > until):
                continue
            if match(ev):
                await response.write(json.dumps(ev.to_api()).encode() + b"\n")
        return response
    except ConnectionResetError:  # the client went away (`docker events` ended by ^C)
        return response
    finally:
        log.unsubscribe(queue)


async def _start(app: web.Application) -> None:
    app[EVENTS].start()


async def _stop(app: web.Application) -> None:
    await app[EVENTS].stop()


def setup(app: web.Application) -> None:
    app[EVENTS] = EventLog(app[CONTROL].store)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    add_route(app, "GET", "/events", events)
