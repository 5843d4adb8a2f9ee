"""/secrets and /configs: what `docker secret|config create / ls / inspect / rm` and the
SDK's `secrets.*` / `configs.*` call. The two share one shape; only the kind differs."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from ..manager.controlapi import object_json
from .filters import parse_filters
from .keys import CONTROL
from .params import read_json, uint_value
from .versioning import add_route


async def list_objects(kind: str, request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    objs = await request.app[CONTROL].list_objects(kind, filters)
    return web.json_response([object_json(o) for o in objs])


async def get_object(kind: str, request: web.Request) -> web.Response:
    obj = await request.app[CONTROL].get_object(kind, request.match_info["ref"])
    return web.json_response(object_json(obj))


async def create_object(kind: str, request: web.Request) -> web.Response:
    body = await read_json(request)
    obj = await request.app[CONTROL].create_object(kind, body)
    return web.json_response({"ID": obj.id}, status=201)


async def update_object(kind: str, request: web.Request) -> web.Response:
    version = uint_value(request.query.get("version"), kind)
    body = await read_json(request)
    await request.app[CONTROL].update_object(kind, request.match_info["ref"], version, body)
    return web.Response(status=200)


async def remove_object(kind: str, request: web.Request) -> web.Response:
    await request.app[CONTROL].remove_object(kind, request.match_info["ref"])
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    for kind in ("secret", "config"):
        base = f"/{kind}s"
        add_route(app, "GET", base, partial(list_objects, kind))
        add_route(app, "POST", f"{base}/create", partial(create_object, kind))
        add_route(app, "GET", base + "/{ref}", partial(get_object, kind))
        add_route(app, "POST", base + "/{ref}/update", partial(update_object, kind))
        add_route(app, "DELETE", base + "/{ref}", partial(remove_object, kind))
