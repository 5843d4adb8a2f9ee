"""/services: what `docker service create/ls/inspect/ps/scale/update/rollback/rm` and the
SDK's `services.*` call (request sequences in notes/docker-api.md)."""

from __future__ import annotations

from aiohttp import web

from ..manager.controlapi import service_json
from .errors import bad_request
from .filters import parse_filters
from .keys import CONTROL
from .params import bool_value, read_json, uint_value
from .versioning import add_route

REGISTRY_AUTH_FROM = ("", "spec", "previous-spec")
"""Accepted and ignored: no registry is reachable here, images are used as given."""


async def list_services(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    services, statuses = await request.app[CONTROL].list_services_with_status(
        filters, status=bool_value(request, "status"))
    return web.json_response([service_json(s, status=statuses.get(s.id)) for s in services])


async def get_service(request: web.Request) -> web.Response:
    service = await request.app[CONTROL].get_service(request.match_info["ref"])
    return web.json_response(
        service_json(service, insert_defaults=bool_value(request, "insertDefaults"))
    )


async def create_service(request: web.Request) -> web.Response:
    """dockerd's ServiceCreateResponse: `Warnings` only when there are some (the CLI prints
    each); here they name the unknown keys that were dropped."""
    spec = await read_json(request)
    warnings: list[str] = []
    service = await request.app[CONTROL].create_service(spec, warnings=warnings)
    body: dict = {"ID": service.id}
    if warnings:
        body["Warnings"] = warnings
    return web.json_response(body, status=201)


async def update_service(request: web.Request) -> web.Response:
    # dockerd decodes the body before it parses the version; keep its order of errors.
    spec = await read_json(request)
    version = uint_value(request.query.get("version"), "service")
    auth_from = request.query.get("registryAuthFrom", "")
    if auth_from not in REGISTRY_AUTH_FROM:
        raise bad_request(f"unsupported registryAuthFrom '{auth_from}'")
    warnings: list[str] = []
    await request.app[CONTROL].update_service(
        request.match_info["ref"], version, spec, rollback=request.query.get("rollback"),
        warnings=warnings,
    )
    return web.json_response({"Warnings": warnings or None})


async def remove_service(request: web.Request) -> web.Response:
    await request.app[CONTROL].remove_service(request.match_info["ref"])
    return web.Response(status=200)


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/services", list_services)
    add_route(app, "POST", "/services/create", create_service)
    add_route(app, "GET", "/services/{ref}", get_service)
    add_route(app, "POST", "/services/{ref}/update", update_service)
    add_route(app, "DELETE", "/services/{ref}", remove_service)
