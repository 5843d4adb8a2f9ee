"""/nodes: what `docker node ls/inspect/promote/demote/update/rm` and the SDK's
`nodes.list()` / `node.update()` call."""

from __future__ import annotations

from aiohttp import web

from .chunked import RenderCache, json_list
from .filters import parse_filters
from .keys import CONTROL, SERVER, common_headers
from .params import bool_value, read_json, uint_value
from .versioning import add_route

NODE_JSON = web.AppKey("node_json", RenderCache)


def _json(data) -> web.Response:
    return web.json_response(data)


async def list_nodes(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request.query.get("filters"))
    nodes = await request.app[CONTROL].list_nodes(filters)
    server = request.app[SERVER]
    return await json_list(request, nodes, request.app[NODE_JSON].encoder(),
                           headers=lambda resp: common_headers(resp, server))


async def get_node(request: web.Request) -> web.Response:
    node = await request.app[CONTROL].get_node(request.match_info["ref"])
    return _json(node.to_api())


async def update_node(request: web.Request) -> web.Response:
    version = uint_value(request.query.get("version"), "node")
    spec = await read_json(request)
    await request.app[CONTROL].update_node(request.match_info["ref"], version, spec)
    return web.Response(status=200)


async def remove_node(request: web.Request) -> web.Response:
    await request.app[CONTROL].remove_node(
        request.match_info["ref"], force=bool_value(request, "force")
    )
    return web.Response(status=200)


def setup(app: web.Application) -> None:
    app[NODE_JSON] = RenderCache(lambda: app[CONTROL].store, lambda n: n.to_api())
    add_route(app, "GET", "/nodes", list_nodes)
    add_route(app, "GET", "/nodes/{ref}", get_node)
    add_route(app, "POST", "/nodes/{ref}/update", update_node)
    add_route(app, "DELETE", "/nodes/{ref}", remove_node)
