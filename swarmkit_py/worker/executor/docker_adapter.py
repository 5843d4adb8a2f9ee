"""The thin layer between an assigned task and the Docker engine (swarmkit's `dockerapi`).

Everything engine-specific is here: how a task's spec becomes create arguments, the labels
that let `docker ps` (and a restarted worker) tell which task a container is, and how transport
failures become the one retryable EngineUnavailable error. The SDK is blocking; `call` runs it
in a thread so one event loop can drive many tasks: threads of its own pool (DOCKER_THREADS),
not the event loop's default executor, where each running task's wait for its container
would hold one of the few threads the agent's other blocking work (Raft's WAL on a manager,
the network plane) needs: with six tasks on a 2-core manager, every API write timed out.

Durations arrive in nanoseconds, as the spec keeps them and as the engine takes a health
check's; only `docker stop`'s timeout is whole seconds (`stop_timeout`).

Every ContainerSpec field of Docker API 1.41 reaches the engine as dockerd's own swarm
executor passes it (daemon/cluster/executor/container/container.go), with three additions:
the stop grace period is also the container's StopTimeout (so a `docker stop` by hand on the
node waits as long as Swarm would), a memory reservation becomes the container's soft limit
(MemoryReservation; the CPU reservation is the scheduler's alone, as in Docker), and the
aliases of a Hosts entry are added too (dockerd drops them). The control API has refused what
a Linux engine cannot do (controlapi/taskfields.py).
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container, _create_container_args

from ...memory import trim_heap
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


DOCKER_THREADS = 256
"""Docker calls at once per agent (the creates, starts and stops of many tasks at once: a stop
holds its thread for the task's grace period). Running tasks hold none: their exits come from
one events stream (executor/exits.py). Threads are made only when that many calls are in
flight at once."""
KEEP_THREADS = 8
"""After a burst that made more threads than this, the pool is retired once no call is in
flight (its idle threads end, glibc releases their stacks) and a new one starts with the next
call: 50 tasks started at once left 50 idle threads behind, ~5 MB of a worker's RSS
(bench/agent_rss.py). `ThreadPoolExecutor` never ends an idle thread by itself."""
_pool: ThreadPoolExecutor | None = None
_in_flight = 0
_peak = 0
"""Most calls in flight at once since `_pool` was made: an upper bound of its threads."""


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    global _pool, _in_flight, _peak
    if _pool is None:
        _pool = ThreadPoolExecutor(DOCKER_THREADS, thread_name_prefix="docker")
    _in_flight += 1
    _peak = max(_peak, _in_flight)
    try:
        return await asyncio.get_running_loop().run_in_executor(
            _pool, functools.partial(call_sync, fn, *args, **kwargs))
    finally:
        _in_flight -= 1
        if _in_flight == 0 and _peak > KEEP_THREADS:
            _pool.shutdown(wait=False)
            _pool, _peak = None, 0
            trim_heap()  # what the burst's threads and buffers freed, back to the system


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


def extra_hosts(entries: list[str] | None) -> list[str]:
    """Swarm's Hosts (`IP name [aliases...]`, as in /etc/hosts) as the engine's ExtraHosts
    (`name:IP`), one per name."""
    out = []
    for entry in entries or ():
        ip, *names = entry.split()
        out += [f"{name}:{ip}" for name in names]
    return out


def security_opts(cs: ContainerSpec) -> list[str]:
    """Privileges.SELinuxContext as the engine's `label=` options (dockerd's applyPrivileges);
    the engine applies them where SELinux is enabled."""
    ctx = cs.privileges.selinux_context if cs.privileges is not None else None
    if ctx is None:
        return []
    out = ["label=disable"] if ctx.disable else []
    for key in ("user", "role", "type", "level"):
        value = getattr(ctx, key)
        if value:
            out.append(f"label={key}:{value}")
    return out


def create_args(task: AssignedTask) -> dict[str, Any]:
    """Keyword arguments for `create_container` (those of `client.containers.create`, plus
    `stop_timeout`)."""
    cs = container_spec(task)
    resources = task.spec.resources
    limits = resources.limits if resources is not None else None
    reservations = resources.reservations if resources is not None else None
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
    if reservations is not None and reservations.memory_bytes:
        args["mem_reservation"] = reservations.memory_bytes
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
    if cs.stop_grace_period is not None:
        args["stop_timeout"] = stop_timeout(task)
    for field, arg in (("tty", "tty"), ("open_stdin", "stdin_open"), ("read_only", "read_only")):
        if getattr(cs, field):
            args[arg] = True
    for field, arg in (("capability_add", "cap_add"), ("capability_drop", "cap_drop")):
        if getattr(cs, field):
            args[arg] = list(getattr(cs, field))
    if cs.sysctls:
        args["sysctls"] = dict(cs.sysctls)
    if cs.ulimits:
        args["ulimits"] = [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in cs.ulimits]
    if cs.mounts:
        args["mounts"] = [m.to_api() for m in cs.mounts]
    if cs.hosts:
        args["extra_hosts"] = extra_hosts(cs.hosts)
    if security_opts(cs):
        args["security_opt"] = security_opts(cs)
    if cs.isolation:
        args["isolation"] = cs.isolation
    dns = cs.dns_config
    if dns is not None and dns.nameservers:
        args["dns"] = list(dns.nameservers)
    if dns is not None and dns.search:
        args["dns_search"] = list(dns.search)
    if dns is not None and dns.options:
        args["dns_opt"] = list(dns.options)
    log = task.spec.log_driver
    if log is not None and log.name:
        args["log_config"] = {"Type": log.name, "Config": dict(log.options or {})}
    if task.networks:
        first = task.networks[0]
        args["network"] = first.name
        args["networking_config"] = {first.name: endpoint_config(first)}
        # The engine derives a container's MAC from its address (02:42 + IPv4); say so
        # explicitly, since peers' forwarding entries are computed by the same rule.
        args["mac_address"] = mac_for(first.ip)
        # The node's service-name resolver first (it forwards other names to the node's
        # resolvers); the spec's own nameservers after it.
        args["dns"] = [first.gateway, *args.get("dns", ())]
    return args


def create_container(client: docker.DockerClient, args: dict[str, Any]) -> Container:
    """`client.containers.create(**args)` with the one create option the SDK's high-level
    call does not take (`stop_timeout`), through the SDK's own argument mapping."""
    args = dict(args)
    timeout = args.pop("stop_timeout", None)
    args.setdefault("command", None)
    args["version"] = client.api._version
    create_kwargs = _create_container_args(args)
    if timeout is not None:
        create_kwargs["stop_timeout"] = timeout
    resp = client.api.create_container(**create_kwargs)
    return handle(client, resp["Id"])


def handle(client: docker.DockerClient | None, container_id: str) -> Container:
    """A container by its ID alone, without its inspect document: a controller keeps one per
    task for as long as the task runs, and the ~20 KB of parsed JSON a full `Container` holds
    was 1 MB of a worker's RSS at 50 tasks (bench/agent_rss.py). Read the state with
    `client.api.inspect_container` when it is needed."""
    return Container(attrs={"Id": container_id}, client=client)


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
