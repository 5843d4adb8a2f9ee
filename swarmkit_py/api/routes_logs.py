"""GET /services/{id}/logs and /tasks/{id}/logs: `docker service logs [-f] [--tail N]
[--since] [--timestamps] [--details]`, answered by the leader's log broker.

The stream is Docker's multiplexed format (8-byte header: stream id, 3 zero bytes, big-endian
length), one frame per line, each line `[timestamp ]<details> <data>` where the details are
`com.docker.swarm.node.id=..,com.docker.swarm.service.id=..,com.docker.swarm.task.id=..`:
the CLI parses them to print its `web.1.<task>@<node>    | ` prefix (dockerd's
WriteLogStream). Only the leader has the nodes' sessions; another manager says so and where
the leader is.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from urllib.parse import quote_plus

from aiohttp import web

from ..manager.logbroker import LogBroker, LogMessage
from .errors import APIError, bad_request
from .keys import CONTROL, SERVER, common_headers
from .params import bool_value
from .routes_events import parse_time
from .versioning import add_route

LOGS = web.AppKey("logbroker", LogBroker)
IDLE_END = 30.0
"""Without --follow: end the stream when no node has said anything for this long (a node
that lost its session never says `done`)."""


def format_ts(ns: int) -> str:
    """Go's RFC3339NanoFixed: always nine fraction digits."""
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def frame(msg: LogMessage, *, details: bool, timestamps: bool) -> bytes:
    line = msg.data if msg.data.endswith(b"\n") else msg.data + b"\n"
    if details:
        attrs = ",".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in (
            ("com.docker.swarm.node.id", msg.node_id),
            ("com.docker.swarm.service.id", msg.service_id),
            ("com.docker.swarm.task.id", msg.task_id)))
        line = attrs.encode() + b" " + line
    if timestamps:
        line = format_ts(msg.ts).encode() + b" " + line
    return bytes([msg.stream, 0, 0, 0]) + len(line).to_bytes(4, "big") + line


async def _logs(request: web.Request, kind: str) -> web.StreamResponse:
    control = request.app[CONTROL]
    ref = request.match_info["ref"]
    if kind == "service":
        service = await control.get_service(ref)
        service_id, task_id = service.id, None
    else:
        task = await control.get_task(ref)
        service_id, task_id = task.service_id, task.id
    if not (bool_value(request, "stdout") or bool_value(request, "stderr")):
        raise bad_request("Bad parameters: you must choose at least one stream")
    follow = bool_value(request, "follow")
    tail_raw = request.query.get("tail", "all")
    if tail_raw in ("", "all"):
        tail = None
    elif tail_raw.lstrip("-").isdigit():
        tail = max(int(tail_raw), 0)
    else:
        raise bad_request(f"invalid value for tail: {tail_raw!r} (a number or all)")
    since_ns = parse_time(request.query.get("since"), "since")
    since = since_ns / 1e9 if since_ns else None
    details, timestamps = bool_value(request, "details"), bool_value(request, "timestamps")
    broker = request.app.get(LOGS)
    if broker is None or not broker.running:
        leader_id = control.ctx.leader_node_id()
        node = control.store.view().get_node(leader_id) if leader_id else None
        where = node.description.hostname if node is not None and node.description else ""
        raise APIError(503, "logs are collected by the leader's log broker and this manager "
                            "is not the leader: run the command against the leader"
                       + (f" ({where})" if where else ""))
    sub = await broker.subscribe(service_id, task_id, follow=follow, tail=tail, since=since)
    response = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream"})
    common_headers(response, request.app[SERVER])
    try:
        await response.prepare(request)
        last = time.monotonic()
        while True:
            if sub.ended.is_set() and sub.queue.empty():
                break
            try:
                msg = await asyncio.wait_for(sub.queue.get(), 0.5)
            except TimeoutError:
                if not follow and time.monotonic() - last > IDLE_END:
                    break
                continue
            last = time.monotonic()
            await response.write(frame(msg, details=details, timestamps=timestamps))
        return response
    except ConnectionResetError:
        return response
    finally:
        await broker.close(sub)


async def service_logs(request: web.Request) -> web.StreamResponse:
    return await _logs(request, "service")


async def task_logs(request: web.Request) -> web.StreamResponse:
    return await _logs(request, "task")


def setup(app: web.Application, broker: LogBroker) -> None:
    """Called by the agent with its leader's broker (the API works without one: 503)."""
    app[LOGS] = broker


def routes(app: web.Application) -> None:
    add_route(app, "GET", "/services/{ref}/logs", service_logs)
    add_route(app, "GET", "/tasks/{ref}/logs", task_logs)
