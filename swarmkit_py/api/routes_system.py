"""/_ping, /version, /info and /distribution: what clients call before and around the swarm
commands (negotiation, `docker version`, `docker info`, image digest pinning)."""

from __future__ import annotations

import os
import platform
import sys

from aiohttp import web

from .errors import APIError
from .keys import CONTROL, SERVER
from .versioning import API_VERSION, MIN_API_VERSION, add_route, public

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def go_arch() -> str:
    """Docker reports GOARCH names (amd64), not uname's (x86_64)."""
    machine = platform.machine()
    return _ARCH.get(machine, machine)


@public
async def ping(request: web.Request) -> web.Response:
    return web.Response(
        text="OK",
        content_type="text/plain",
        headers={
            "Cache-Control": "no-cache, no-store, must-revalidate",
            "Pragma": "no-cache",
            # Makes the CLI show the node/swarm commands in --help as on a manager.
            "Swarm": "active/manager",
        },
    )


async def version(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": platform.release(),
        "Experimental": "false",
        "GitCommit": "",
        "GoVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "BuildTime": "",
    }
    return web.json_response(
        {
            "Platform": {"Name": "swarmkit-py"},
            "Components": [
                {"Name": "Engine", "Version": server.engine_version, "Details": details}
            ],
            "Version": server.engine_version,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": details["GoVersion"],
            "Os": "linux",
            "Arch": details["Arch"],
            "KernelVersion": details["KernelVersion"],
            "BuildTime": "",
        }
    )


def _mem_total() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


async def info(request: web.Request) -> web.Response:
    """Docker's /info with the fields the CLI needs; engine counters are zero because this
    process runs no containers itself (the local engine does, and answers its own /info)."""
    server = request.app[SERVER]
    swarm = await request.app[CONTROL].info()
    return web.json_response(
        {
            "ID": swarm.get("NodeID", ""),
            "Name": server.hostname,
            "ServerVersion": server.engine_version,
            "OperatingSystem": platform.system(),
            "OSType": "linux",
            "OSVersion": "",
            "Architecture": platform.machine(),
            "KernelVersion": platform.release(),
            "NCPU": os.cpu_count() or 0,
            "MemTotal": _mem_total(),
            "Containers": 0,
            "ContainersRunning": 0,
            "ContainersPaused": 0,
            "ContainersStopped": 0,
            "Images": 0,
            "Driver": "",
            "DriverStatus": None,
            "Plugins": {"Volume": None, "Network": None, "Authorization": None, "Log": None},
            "Debug": False,
            "ExperimentalBuild": False,
            "Labels": [],
            "DockerRootDir": "",
            "IndexServerAddress": "",
            "SecurityOptions": [],
            "Swarm": swarm,
            "Warnings": None,
        }
    )


async def distribution(request: web.Request) -> web.Response:
    """No registry lookups here: a 404 makes the CLI warn and keep the tag as given, instead of
    pinning a digest this cluster never resolved (notes, pitfall 11)."""
    raise APIError(
        404,
        f"swarmkit-py does not resolve image digests: {request.match_info['name']} "
        "is used as given",
    )


def setup(app: web.Application) -> None:
    # GET routes answer HEAD too (the CLI's first request is HEAD /_ping).
    add_route(app, "GET", "/_ping", ping)
    add_route(app, "GET", "/version", version)
    add_route(app, "GET", "/info", info)
    add_route(app, "GET", "/distribution/{name:.+}/json", distribution)
