"""GET /services/{id}/logs and /tasks/{id}/logs: `docker service logs [-f] [--tail N]
[--since] [--timestamps] [--details]`, answered by the leader's log broker.

The stream is Docker's multiplexed format (8-byte header: stream id, 3 zero bytes, big-endian
length), one frame per line, each line `[timestamp ]<details> <data>` where the details are
`com.docker.swarm.node.id=..,com.docker.swarm.service.id=..,com.docker.swarm.task.id=..`:
the CLI parses them to print its `web.1.<task>@<node>    | ` prefix (dockerd's
WriteLogStream). The stream id is the line's own (1 stdout, 2 stderr): the CLI's stdcopy
writes them to its stdout and stderr. Any manager answers: manager/logreader.py collects the
lines from the leader's log broker, wherever the leader is and however often it changes.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from urllib.parse import quote_plus

from aiohttp import web

from ..manager.logbroker import LogMessage
from ..manager.logreader import LogReader, LogRequest
from .errors import APIError, bad_request
from .keys import CONTROL, SERVER, common_headers
from .params import bool_value
from .routes_events import parse_time
from .versioning import add_route

LOGS = web.AppKey("logreader", LogReader)


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
    stdout, stderr = bool_value(request, "stdout"), bool_value(request, "stderr")
    if not (stdout or stderr):
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
    reader = request.app.get(LOGS)
    if reader is None:
        raise APIError(503, "this API serves no logs: it has no log broker (not a manager)")
    stream = await reader.open(LogRequest(service_id, task_id, follow, tail, since,
                                          stdout, stderr))
    response = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream"})
    common_headers(response, request.app[SERVER])
    try:
        await response.prepare(request)
        async with contextlib.aclosing(stream.messages()) as lines:
            async for msg in lines:
                await response.write(frame(msg, details=details, timestamps=timestamps))
        return response
    except ConnectionResetError:
        return response
    finally:
        await stream.close()


async def service_logs(request: web.Request) -> web.StreamResponse:
    return await _logs(request, "service")


async def task_logs(request: web.Request) -> web.StreamResponse:
    return await _logs(request, "task")


def setup(app: web.Application, reader: LogReader) -> None:
    """Called by the agent with its manager's log reader (the API works without one: 503)."""
    app[LOGS] = reader


def routes(app: web.Application) -> None:
    add_route(app, "GET", "/services/{ref}/logs", service_logs)
    add_route(app, "GET", "/tasks/{ref}/logs", task_logs)
