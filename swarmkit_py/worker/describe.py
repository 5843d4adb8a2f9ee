"""What this node reports about itself when it opens a dispatcher session.

The scheduler reads it (resources for reservations, ``engine.labels.*`` and ``node.hostname``
for constraints), and ``docker node ls/inspect`` shows it. Swarm takes it from the engine's
``info``; so do we when the local engine answers, because the engine is what runs the tasks
(its CPU count and memory may differ from the host's under cgroup limits, and engine labels
exist only there). Without an engine the node can still join and be seen, so /proc and
``platform`` fill in what they can.

The result is the wire shape the dispatcher validates (snake_case keys, see
``proto/dispatcher.py``). ``describe_node`` blocks (the engine's API, /proc): call it in a
thread.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
from typing import Any

log = logging.getLogger(__name__)

NANO = 1_000_000_000


def description_from_info(info: dict[str, Any], hostname: str | None = None) -> dict[str, Any]:
    """The description from a Docker ``/info`` answer. ``Architecture`` is passed on verbatim
    (uname's ``x86_64``), as Swarm's node description does."""
    labels: dict[str, str] = {}
    for item in info.get("Labels") or []:
        key, sep, value = str(item).partition("=")
        if key:
            labels[key] = value if sep else ""
    ncpu = info.get("NCPU")
    memory = info.get("MemTotal")
    return {
        "hostname": hostname or socket.gethostname(),
        "platform": {
            "architecture": info.get("Architecture") or platform.machine(),
            "os": info.get("OSType") or platform.system().lower(),
        },
        "resources": {
            "nano_cpus": int(ncpu) * NANO if ncpu else None,
            "memory_bytes": int(memory) if memory else None,
        },
        "engine": {"engine_version": info.get("ServerVersion"), "labels": labels},
    }


def description_from_host(
    hostname: str | None = None, meminfo: str = "/proc/meminfo"
) -> dict[str, Any]:
    """The description without an engine: CPUs this process may use, MemTotal from /proc."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 0
    return {
        "hostname": hostname or socket.gethostname(),
        "platform": {"architecture": platform.machine(), "os": platform.system().lower()},
        "resources": {
            "nano_cpus": cpus * NANO if cpus else None,
            "memory_bytes": _mem_total(meminfo),
        },
        "engine": None,
    }


def _mem_total(path: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    parts = line.split()
                    return int(parts[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def describe_node(
    docker_base_url: str | None = None, *, hostname: str | None = None, timeout: int = 3
) -> dict[str, Any]:
    """Engine first, host as fallback. ``hostname`` overrides the system's (several agents on
    one machine in tests, or an operator-chosen name)."""
    from ..engine import Engine

    try:
        client = Engine(docker_base_url, timeout=timeout)
        try:
            info = client.info()
        finally:
            client.close()
    except Exception as e:  # no socket, engine down or hung, a bad address: all mean "no engine"
        log.info("docker engine not reachable (%s); describing the node from the host", e)
        return description_from_host(hostname)
    return description_from_info(info, hostname)
