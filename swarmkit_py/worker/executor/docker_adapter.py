"""The thin layer between an assigned task and the Docker engine (swarmkit's `dockerapi`).

Everything engine-specific is here: how a task's spec becomes create arguments, the labels
that let `docker ps` (and a restarted worker) tell which task a container is, and how transport
failures become the one retryable EngineUnavailable error. The SDK is blocking; `call` runs it
in a thread so one event loop can drive many tasks.

Durations arrive in nanoseconds, as the spec keeps them and as the engine takes a health
check's; only `docker stop`'s timeout is whole seconds (`stop_timeout`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from ...proto import AssignedTask, NetAttachment
from ...store.objects import ContainerSpec, HealthConfig
from ...store.objects.taskspec import DEFAULT_STOP_GRACE_PERIOD, SECOND
from .errors import EngineUnavailable

LABEL_TASK = "com.docker.swarm.task"
LABEL_TASK_ID = "com.docker.swarm.task.id"
LABEL_TASK_NAME = "com.docker.swarm.task.name"
LABEL_SERVICE_ID = "com.docker.swarm.service.id"
LABEL_SERVICE_NAME = "com.docker.swarm.service.name"
LABEL_NODE_ID = "com.docker.swarm.node.id"

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


def container_spec(task: AssignedTask) -> ContainerSpec:
    return task.spec.container_spec or ContainerSpec()


def container_name(task: AssignedTask) -> str:
    """Swarm's task name, also the container's: `<service>.<slot|node>.<task id>`."""
    middle = task.node_id if task.slot is None else str(task.slot)
    return f"{task.service_name}.{middle}.{task.id}"


def stop_timeout(task: AssignedTask, grace: int | None = None) -> int:
    """`docker stop`'s timeout in whole seconds (rounded up) for a grace period in ns; the
    task's own (Swarm's 10 s default when it names none) when `grace` is None."""
    if grace is None:
        grace = container_spec(task).stop_grace_period
        if grace is None:
            grace = DEFAULT_STOP_GRACE_PERIOD
    return math.ceil(grace / SECOND)


def container_labels(task: AssignedTask) -> dict[str, str]:
    """User labels, then Swarm's: a task cannot pass itself off as another by its labels."""
    return {
        **(container_spec(task).labels or {}),
        LABEL_TASK: "",
        LABEL_TASK_ID: task.id,
        LABEL_TASK_NAME: container_name(task),
        LABEL_SERVICE_ID: task.service_id,
        LABEL_SERVICE_NAME: task.service_name,
        LABEL_NODE_ID: task.node_id,
    }


def _healthcheck(hc: HealthConfig) -> dict[str, Any]:
    """Overrides the image's health check (["NONE"] disables it); 0 means engine default."""
    return {
        "test": list(hc.test or ()),
        "interval": hc.interval or 0,
        "timeout": hc.timeout or 0,
        "retries": hc.retries or 0,
        "start_period": hc.start_period or 0,
    }


def _port_bindings(task: AssignedTask) -> dict[str, list[dict[str, str]]]:
    """Host-mode ports, bound on this node only on every address, as Swarm's `mode=host`. An
    empty HostPort asks the engine for a free port; several bindings may share a target."""
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in task.ports:
        host = {"HostIp": "", "HostPort": str(p.published_port or "")}
        bindings.setdefault(f"{p.target_port}/{p.protocol or 'tcp'}", []).append(host)
    return bindings


def create_args(task: AssignedTask) -> dict[str, Any]:
    """Keyword arguments for `client.containers.create`."""
    cs = container_spec(task)
    limits = task.spec.resources.limits if task.spec.resources is not None else None
    args: dict[str, Any] = {
        "image": cs.image,
        "name": container_name(task),
        "labels": container_labels(task),
        "environment": list(cs.env or ()),
    }
    if cs.command:
        args["entrypoint"] = list(cs.command)
    if cs.args:
        args["command"] = list(cs.args)
    if task.ports:
        args["ports"] = _port_bindings(task)
    if limits is not None and limits.nano_cpus:
        args["nano_cpus"] = limits.nano_cpus
    if limits is not None and limits.memory_bytes:
        args["mem_limit"] = limits.memory_bytes
    # The ContainerSpec fields `docker service create` offers that map one to one onto the
    # engine's create arguments (dockerd's swarm executor passes them the same way).
    for field, arg in (("hostname", "hostname"), ("dir", "working_dir"), ("user", "user"),
                       ("stop_signal", "stop_signal")):
        value = getattr(cs, field)
        if value:
            args[arg] = value
    if cs.groups:
        args["group_add"] = list(cs.groups)
    if cs.init is not None:
        args["init"] = cs.init
    if limits is not None and limits.pids:
        args["pids_limit"] = limits.pids
    if cs.healthcheck is not None and cs.healthcheck.test:
        args["healthcheck"] = _healthcheck(cs.healthcheck)
    if task.networks:
        first = task.networks[0]
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
