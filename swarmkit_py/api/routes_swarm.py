"""/swarm: inspect, update (spec edits, join-token and unlock-key rotation, auto-lock), the
unlock key, and the life-cycle calls this API does not perform.

Joining, initialising and leaving change which process holds the Raft state, so they are done
on the host by the agent's own CLI (`swarmkit-py init/join/leave`), not by a request to a
manager that is by definition already in a swarm. init and join get dockerd's own answer for
that situation; leave gets a message pointing at the command that does it, because dockerd's
"already part of a swarm" would read as nonsense in reply to a leave.
"""

from __future__ import annotations

from aiohttp import web

from ..manager.controlapi import cluster_json
from .errors import APIError
from .keys import CONTROL
from .params import bool_value, read_json, uint_value
from .versioning import add_route

ALREADY_IN_SWARM = (
    'This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and '
    "join another one."
)
NOT_LOCKED = "swarm is not locked"
LEAVE_ELSEWHERE = (
    "This node cannot leave the swarm through the Docker API: run `swarmkit-py leave` on the "
    "host (demote it first if it is a manager)."
)


async def inspect_swarm(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    cluster = await control.get_cluster()
    return web.json_response(
        cluster_json(cluster, join_tokens=True, raft=control.raft_settings())
    )


async def unlock_key(request: web.Request) -> web.Response:
    return web.json_response({"UnlockKey": await request.app[CONTROL].get_unlock_key()})


async def unlock(request: web.Request) -> web.Response:
    """On a running manager there is nothing to unlock (dockerd's notLockedError, a Conflict);
    a locked manager serves its own app (api/locked.py) that takes the key."""
    raise APIError(409, NOT_LOCKED)


async def update_swarm(request: web.Request) -> web.Response:
    version = uint_value(request.query.get("version"), "swarm")
    spec = await read_json(request)
    await request.app[CONTROL].update_cluster(
        version,
        spec,
        rotate_worker_token=bool_value(request, "rotateWorkerToken"),
        rotate_manager_token=bool_value(request, "rotateManagerToken"),
        rotate_manager_unlock_key=bool_value(request, "rotateManagerUnlockKey"),
    )
    return web.Response(status=200)


async def transfer_leader(request: web.Request) -> web.Response:
    """swarmkit-py extension (Docker has no such call): ``POST /swarm/leader?to=<node>`` moves
    Raft leadership to that manager (ID, hostname or prefix; without ``to``, to the most
    caught-up other manager) and answers the new leader's node once it leads."""
    node = await request.app[CONTROL].transfer_leadership(request.query.get("to") or None)
    return web.json_response(node.to_api())


async def init_or_join(request: web.Request) -> web.Response:
    raise APIError(503, ALREADY_IN_SWARM)


async def leave(request: web.Request) -> web.Response:
    raise APIError(503, LEAVE_ELSEWHERE)


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/swarm", inspect_swarm)
    add_route(app, "POST", "/swarm/update", update_swarm)
    add_route(app, "GET", "/swarm/unlockkey", unlock_key)
    add_route(app, "POST", "/swarm/unlock", unlock)
    add_route(app, "POST", "/swarm/leader", transfer_leader)
    add_route(app, "POST", "/swarm/init", init_or_join)
    add_route(app, "POST", "/swarm/join", init_or_join)
    add_route(app, "POST", "/swarm/leave", leave)
