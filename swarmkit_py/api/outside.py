"""Requests for Docker Engine endpoints that a swarm manager of swarmkit-py does not serve.

dockerd answers an unknown path with 404 "page not found", which tells an operator running
`docker ps` or `docker system df` against the cluster's API nothing. Engine-local endpoints
(containers, images, volumes, builds, plugins...) belong to each node's own engine: they get
501 Not Implemented (dockerd's status for a feature it lacks) with a message naming the
command family and where to run it. Anything else still gets dockerd's 404, with the path.
"""

from __future__ import annotations

import re

_PREFIX = re.compile(r"^/v[0-9][0-9.]*(?=/)")

ENGINE_LOCAL = {
    "containers": "containers (docker ps / run / exec / logs)",
    "exec": "container exec sessions (docker exec)",
    "images": "images (docker images / pull / push)",
    "build": "image builds (docker build)",
    "volumes": "volumes (docker volume)",
    "plugins": "plugins (docker plugin)",
    "system": "engine-wide data (docker system df / prune)",
    "commit": "image commits (docker commit)",
    "auth": "registry logins (docker login)",
    "session": "build sessions (docker buildx)",
    "grpc": "build sessions (docker buildx)",
}


def outside_scope(path: str) -> tuple[int, str]:
    """Status and message for a path no route matched."""
    bare = _PREFIX.sub("", path)
    first = bare.strip("/").split("/", 1)[0]
    what = ENGINE_LOCAL.get(first)
    if what is not None:
        return 501, (f"{what} are not served by swarmkit-py's swarm API ({bare}): it manages "
                     "the swarm (nodes, services, tasks, networks, secrets, configs, events, "
                     "service logs); point DOCKER_HOST at a node's own Docker engine for these")
    return 404, f"page not found: {bare} is not part of the Docker API that swarmkit-py serves"
