"""/tasks: what `docker service ps`, `docker node ps`, the CLI's convergence loop
(`_up-to-date`) and the SDK's `service.tasks()` call."""

from __future__ import annotations

from aiohttp import web

from ..manager.controlapi import task_json
from .chunked import RenderCache, json_list
from .filters import parse_filters
from .keys import CONTROL, SERVER, common_headers
from .versioning import add_route

TASK_JSON = web.AppKey("task_json", RenderCache)


async def list_tasks(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request.query.get("filters"))
    tasks = await request.app[CONTROL].list_tasks(filters)
    server = request.app[SERVER]
    return await json_list(request, tasks, request.app[TASK_JSON].encoder(),
                           headers=lambda resp: common_headers(resp, server))


async def get_task(request: web.Request) -> web.Response:
    task = await request.app[CONTROL].get_task(request.match_info["ref"])
    return web.json_response(task_json(task))


def setup(app: web.Application) -> None:
    app[TASK_JSON] = RenderCache(lambda: app[CONTROL].store, task_json)
    add_route(app, "GET", "/tasks", list_tasks)
    add_route(app, "GET", "/tasks/{ref}", get_task)
