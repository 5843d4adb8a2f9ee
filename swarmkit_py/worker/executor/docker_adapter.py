"""The thin layer between a TaskSpec and the Docker engine (swarmkit's `dockerapi` adapter).

Everything engine-specific is here: how a spec becomes create arguments, the labels that let
`docker ps` (and a restarted worker) tell which task a container is, and how transport failures
become the one retryable EngineUnavailable error. The SDK is blocking; `call` runs it in a
thread so one event loop can drive many tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from .errors import EngineUnavailable
from .spec import HealthCheck, NetAttachment, TaskSpec

LABEL_TASK = "com.docker.swarm.task"
LABEL_TASK_ID = "com.docker.swarm.task.id"
LABEL_TASK_NAME = "com.docker.swarm.task.name"
LABEL_SERVICE_ID = "com.docker.swarm.service.id"
LABEL_SERVICE_NAME = "com.docker.swarm.service.name"
LABEL_NODE_ID = "com.docker.swarm.node.id"

_NS = 1_000_000_000
T = TypeVar("T")

# A hung engine surfaces as a timeout, a dead one as a connection error: both are "unavailable".
_TRANSPORT_ERRORS = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def connect(base_url: str | None = None, timeout: int = 60) -> docker.DockerClient:
    """A client for the local engine (DOCKER_HOST or the default socket when base_url is None)."""
    try:
        if base_url is None:
            return docker.from_env(timeout=timeout)
        return docker.DockerClient(base_url=base_url, timeout=timeout)
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(f"docker engine unavailable: {exc}") from exc


def call_sync(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except _TRANSPORT_ERRORS as exc:
        raise EngineUnavailable(f"docker engine unavailable: {exc}") from exc


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(call_sync, fn, *args, **kwargs)


def container_labels(spec: TaskSpec) -> dict[str, str]:
    """User labels, then Swarm's: a task cannot pass itself off as another by its labels."""
    return {
        **spec.labels,
        LABEL_TASK: "",
        LABEL_TASK_ID: spec.task_id,
        LABEL_TASK_NAME: spec.name,
        LABEL_SERVICE_ID: spec.service_id,
        LABEL_SERVICE_NAME: spec.service_name,
        LABEL_NODE_ID: spec.node_id,
    }


def _healthcheck(hc: HealthCheck) -> dict[str, Any]:
    return {
        "test": list(hc.test),
        "interval": int(hc.interval * _NS),
        "timeout": int(hc.timeout * _NS),
        "retries": hc.retries,
        "start_period": int(hc.start_period * _NS),
    }


def _port_bindings(spec: TaskSpec) -> dict[str, list[dict[str, str]]]:
    """An empty HostPort asks the engine for a free port; several bindings may share a target."""
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in spec.ports:
        host = {"HostIp": p.host_ip, "HostPort": str(p.published_port or "")}
        bindings.setdefault(f"{p.target_port}/{p.protocol}", []).append(host)
    return bindings


def create_args(spec: TaskSpec) -> dict[str, Any]:
    """Keyword arguments for `client.containers.create`."""
    args: dict[str, Any] = {
        "image": spec.image,
        "name": spec.name,
        "labels": container_labels(spec),
        "environment": list(spec.env),
    }
    if spec.command:
        args["entrypoint"] = list(spec.command)
    if spec.args:
        args["command"] = list(spec.args)
    if spec.ports:
        args["ports"] = _port_bindings(spec)
    if spec.nano_cpus:
        args["nano_cpus"] = spec.nano_cpus
    if spec.memory_bytes:
        args["mem_limit"] = spec.memory_bytes
    if spec.healthcheck is not None:
        args["healthcheck"] = _healthcheck(spec.healthcheck)
    if spec.networks:
        first = spec.networks[0]
        args["network"] = first.name
        args["networking_config"] = {first.name: endpoint_config(first)}
        # The engine derives a container's MAC from its address (02:42 + IPv4); say so
        # explicitly, since peers' forwarding entries are computed by the same rule.
        args["mac_address"] = mac_for(first.ip)
        args["dns"] = [first.gateway]
    return args


def endpoint_config(net: NetAttachment) -> dict[str, Any]:
    return {"IPAMConfig": {"IPv4Address": net.ip}, "Aliases": list(net.aliases) or None}


def mac_for(ip: str) -> str:
    return "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))


def has_healthcheck(attrs: dict[str, Any]) -> bool:
    """From the container's merged config, so the image's own check counts too."""
    test = ((attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    return bool(test) and test[0] != "NONE"


def health_status(attrs: dict[str, Any]) -> str:
    """"starting", "healthy", "unhealthy", or "" when the container has no health check."""
    return ((attrs.get("State") or {}).get("Health") or {}).get("Status", "")


def list_task_containers(client: docker.DockerClient, node_id: str) -> dict[str, Container]:
    """Every task container (running or not) this node's executor made, by task ID.

    A restarted worker compares this with its assignments: it adopts the containers of tasks
    still assigned (Controller.adopt) and removes the rest.
    """
    found = call_sync(client.containers.list, all=True,
                      filters={"label": f"{LABEL_NODE_ID}={node_id}"})
    return {c.labels[LABEL_TASK_ID]: c for c in found if LABEL_TASK_ID in c.labels}
