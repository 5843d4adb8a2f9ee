"""/networks: what `docker network create -d overlay / ls / inspect / rm / prune` and the
SDK's `networks.*` call. Only swarm-scope (overlay) networks live here."""

from __future__ import annotations

from aiohttp import web

from ..manager.controlapi import network_json
from .filters import parse_filters
from .keys import CONTROL
from .params import read_json
from .versioning import add_route


async def list_networks(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    networks = await request.app[CONTROL].list_networks(filters)
    return web.json_response([network_json(n) for n in networks])


async def get_network(request: web.Request) -> web.Response:
    network = await request.app[CONTROL].get_network(request.match_info["ref"])
    return web.json_response(network_json(network))


async def create_network(request: web.Request) -> web.Response:
    body = await read_json(request)
    network = await request.app[CONTROL].create_network(body)
    return web.json_response({"Id": network.id, "Warning": ""}, status=201)


async def remove_network(request: web.Request) -> web.Response:
    await request.app[CONTROL].remove_network(request.match_info["ref"])
    return web.Response(status=204)


async def prune_networks(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    deleted = await request.app[CONTROL].prune_networks(filters)
    return web.json_response({"NetworksDeleted": deleted or None})


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/networks", list_networks)
    add_route(app, "POST", "/networks/create", create_network)
    add_route(app, "POST", "/networks/prune", prune_networks)
    add_route(app, "GET", "/networks/{ref}", get_network)
    add_route(app, "DELETE", "/networks/{ref}", remove_network)
