"""`make_app`: the Docker Engine API subset as an aiohttp application.

One middleware does what every route needs, in this order:
1. refuse a `/vX.Y` prefix outside [1.24, 1.41] (dockerd's messages);
2. call the `authorize(request)` hook, if given, on every route but /_ping (the manager uses it
   to refuse worker certificates on the TCP listener);
3. turn anything a handler raises into `{"message": ...}` JSON with Docker's status;
4. stamp `Api-Version` (and dockerd's other headers) on every response, errors included,
   because the CLI negotiates from that header even when the ping fails;
5. stamp `X-Swarmkit-Read: linearizable|stale` on a response built from store reads: whether
   a quorum confirmed them (controlapi's `read_consistency`, reset for every request since a
   keep-alive connection serves its requests in one task).

Other packages (services, tasks, /metrics) add their routes to the returned app with
`versioning.add_route` before it is served.
"""

from __future__ import annotations

import inspect
import time

from aiohttp import web

from ..histogram import Histogram
from ..manager.controlapi import ControlAPI
from ..manager.controlapi.control import read_consistency
from . import (
    routes_events,
    routes_logs,
    routes_networks,
    routes_nodes,
    routes_secrets,
    routes_services,
    routes_swarm,
    routes_system,
    routes_tasks,
)
from .errors import json_error, status_and_message
from .keys import CONTROL, SERVER, Authorize, ServerInfo, common_headers
from .outside import outside_scope
from .params import MAX_BODY_BYTES, MAX_BODY_KEY
from .versioning import VersionError, check_client_version, is_public

AUTHORIZE = web.AppKey("authorize", object)
REQUEST_SECONDS = web.AppKey("request_seconds", Histogram)
"""How long the handlers took (a streamed list included), for `/metrics`."""
READ_HEADER = "X-Swarmkit-Read"


@web.middleware
async def docker_middleware(request: web.Request, handler) -> web.StreamResponse:
    server = request.app[SERVER]
    t0 = time.perf_counter()
    token = read_consistency.set(None)
    try:
        try:
            check_client_version(request.match_info.get("version"))
        except VersionError as exc:
            response: web.StreamResponse = json_error(400, exc.message)
        else:
            authorize = request.app.get(AUTHORIZE)
            if authorize is not None and not is_public(handler):
                result = authorize(request)
                if inspect.isawaitable(result):
                    await result
            response = await handler(request)
    except web.HTTPNotFound as exc:
        if request.match_info.http_exception is not None:  # no route: not a handler's 404
            response = json_error(*outside_scope(request.path))
        else:
            response = json_error(*status_and_message(exc))
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect or success raised on purpose: not an error
            raise
        response = json_error(*status_and_message(exc))
    except Exception as exc:
        response = json_error(*status_and_message(exc))
    consistency = read_consistency.get()
    read_consistency.reset(token)
    if not response.prepared:  # a stream (events, logs) stamped its own before sending them
        common_headers(response, server)
        if consistency:
            response.headers[READ_HEADER] = consistency
    timer = request.app.get(REQUEST_SECONDS)
    if timer is not None:
        timer.observe(time.perf_counter() - t0)
    return response


def bare_app(control: ControlAPI, *, engine_version: str, hostname: str, authorize: Authorize | None,
             max_body_bytes: int) -> web.Application:
    """An app with the middleware and what it reads, and no route yet."""
    app = web.Application(middlewares=[docker_middleware], client_max_size=max_body_bytes)
    app[CONTROL] = control
    app[SERVER] = ServerInfo(engine_version=engine_version, hostname=hostname)
    app[MAX_BODY_KEY] = max_body_bytes
    app[REQUEST_SECONDS] = Histogram()
    if authorize is not None:
        app[AUTHORIZE] = authorize
    return app


def make_app(
    control: ControlAPI,
    *,
    engine_version: str,
    hostname: str,
    authorize: Authorize | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> web.Application:
    """The app for one listener. `authorize(request)` may be sync or async and refuses by
    raising (PermissionError or web.HTTPForbidden -> 403 JSON). An app may be served on
    several listeners; when they need different checks (TCP with client certificates vs the
    root-only unix socket, where file permissions are the check), either make one app per
    listener or have `authorize` look at the request's transport (no peer certificate on a
    unix socket)."""
    app = bare_app(control, engine_version=engine_version, hostname=hostname, authorize=authorize,
                   max_body_bytes=max_body_bytes)
    routes_system.setup(app)
    routes_nodes.setup(app)
    routes_swarm.setup(app)
    routes_services.setup(app)
    routes_tasks.setup(app)
    routes_networks.setup(app)
    routes_secrets.setup(app)
    routes_events.setup(app)
    routes_logs.routes(app)
    return app
