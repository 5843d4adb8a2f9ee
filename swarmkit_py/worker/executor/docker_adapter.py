"""The thin layer between an assigned task and the Docker engine (swarmkit's `dockerapi`).

Everything engine-specific is here: how a task's spec becomes the engine's create body, the
labels that let `docker ps` (and a restarted worker) tell which task a container is, and how
transport failures become the one retryable EngineUnavailable error. The engine client
(`swarmkit_py/engine.py`: http.client, not the Docker SDK; it says why) is blocking; `call` runs it
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
a Linux engine cannot do (controlapi/taskfields.py). The body is the one the Docker SDK built
from the same fields (its `containers.create` mapping), less its Attach*/StdinOnce flags,
which only a `docker start -a` reads and which dockerd's swarm executor does not set either.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ...engine import Engine, Unreachable
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

def connect(base_url: str | None = None, timeout: int = 60) -> Engine:
    """A client for the local engine (DOCKER_HOST or the default socket when base_url is None).
    A hung engine surfaces as a timeout, a dead one as a connection error: both are
    "unavailable", as is a `base_url` that names no engine."""
    try:
        return Engine(base_url, timeout=timeout)
    except (Unreachable, ValueError) as exc:
        raise EngineUnavailable(f"docker engine unavailable: {exc}") from exc


def call_sync(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except Unreachable as exc:
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
        "Test": list(hc.test or ()),
        "Interval": hc.interval or 0,
        "Timeout": hc.timeout or 0,
        "Retries": hc.retries or 0,
        "StartPeriod": hc.start_period or 0,
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


def create_config(task: AssignedTask) -> dict[str, Any]:
    """The engine's create body for the task's container (`POST /containers/create`, its name
    is `container_name`): the container's Config with its HostConfig and NetworkingConfig."""
    cs = container_spec(task)
    resources = task.spec.resources
    limits = resources.limits if resources is not None else None
    reservations = resources.reservations if resources is not None else None
    host: dict[str, Any] = {"NetworkMode": "default"}
    config: dict[str, Any] = {
        "Image": cs.image,
        "Labels": container_labels(task),
        "Env": list(cs.env or ()),
        "Tty": bool(cs.tty),
        "OpenStdin": bool(cs.open_stdin),
        "HostConfig": host,
    }
    if cs.command:
        config["Entrypoint"] = list(cs.command)
    if cs.args:
        config["Cmd"] = list(cs.args)
    if task.ports:
        host["PortBindings"] = _port_bindings(task)
        config["ExposedPorts"] = {port: {} for port in sorted(host["PortBindings"])}
    if limits is not None and limits.nano_cpus:
        host["NanoCpus"] = limits.nano_cpus
    if limits is not None and limits.memory_bytes:
        host["Memory"] = limits.memory_bytes
    if reservations is not None and reservations.memory_bytes:
        host["MemoryReservation"] = reservations.memory_bytes
    # The ContainerSpec fields `docker service create` offers that map one to one onto the
    # engine's create body (dockerd's swarm executor passes them the same way).
    for field, key in (("hostname", "Hostname"), ("dir", "WorkingDir"), ("user", "User"),
                       ("stop_signal", "StopSignal")):
        value = getattr(cs, field)
        if value:
            config[key] = value
    if cs.groups:
        host["GroupAdd"] = [str(g) for g in cs.groups]
    if cs.init is not None:
        host["Init"] = cs.init
    if limits is not None and limits.pids:
        host["PidsLimit"] = limits.pids
    if cs.healthcheck is not None and cs.healthcheck.test:
        config["Healthcheck"] = _healthcheck(cs.healthcheck)
    if cs.stop_grace_period is not None:
        config["StopTimeout"] = stop_timeout(task)
    if cs.read_only:
        host["ReadonlyRootfs"] = True
    for field, key in (("capability_add", "CapAdd"), ("capability_drop", "CapDrop")):
        if getattr(cs, field):
            host[key] = list(getattr(cs, field))
    if cs.sysctls:
        host["Sysctls"] = dict(cs.sysctls)
    if cs.ulimits:
        host["Ulimits"] = [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in cs.ulimits]
    if cs.mounts:
        host["Mounts"] = [m.to_api() for m in cs.mounts]
    if cs.hosts:
        host["ExtraHosts"] = extra_hosts(cs.hosts)
    if security_opts(cs):
        host["SecurityOpt"] = security_opts(cs)
    if cs.isolation:
        host["Isolation"] = cs.isolation
    dns = cs.dns_config
    if dns is not None and dns.nameservers:
        host["Dns"] = list(dns.nameservers)
    if dns is not None and dns.search:
        host["DnsSearch"] = list(dns.search)
    if dns is not None and dns.options:
        host["DnsOptions"] = list(dns.options)
    log = task.spec.log_driver
    if log is not None and log.name:
        host["LogConfig"] = {"Type": log.name, "Config": dict(log.options or {})}
    if task.networks:
        first = task.networks[0]
        host["NetworkMode"] = first.name
        config["NetworkingConfig"] = {"EndpointsConfig": {first.name: endpoint_config(first)}}
        # The engine derives a container's MAC from its address (02:42 + IPv4); say so
        # explicitly, since peers' forwarding entries are computed by the same rule.
        config["MacAddress"] = mac_for(first.ip)
        # The node's service-name resolver first (it forwards other names to the node's
        # resolvers); the spec's own nameservers after it.
        host["Dns"] = [first.gateway, *host.get("Dns", ())]
    return config


def create_container(engine: Engine, name: str, config: dict[str, Any]) -> str:
    """Create the container; its ID. From API 1.44 on, the engine takes a MAC address per
    endpoint (the container-wide one is deprecated there): it moves to the first network's."""
    if "MacAddress" in config and _version_at_least(engine.version, (1, 44)):
        config = dict(config)
        mac = config.pop("MacAddress")
        endpoints = config["NetworkingConfig"]["EndpointsConfig"]
        first = next(iter(endpoints))
        config["NetworkingConfig"] = {"EndpointsConfig": {
            **endpoints, first: {**endpoints[first], "MacAddress": mac}}}
    return engine.create_container(name, config)["Id"]


def _version_at_least(version: str, want: tuple[int, int]) -> bool:
    major, _, minor = version.partition(".")
    try:
        return (int(major), int(minor)) >= want
    except ValueError:
        return False


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


def list_task_containers(engine: Engine, node_id: str) -> dict[str, dict[str, Any]]:
    """Every task container (running or not) this node's executor made, by task ID: its
    inspect document (`Id`, `State`, `Config`), which `Controller.adopt` reads. Raises
    NotFound when one is removed between the list and its inspect (list again).

    A restarted worker compares this with its assignments: it adopts the containers of tasks
    still assigned (Controller.adopt) and removes the rest.
    """
    found = call_sync(engine.containers, all=True,
                      filters={"label": f"{LABEL_NODE_ID}={node_id}"})
    return {c["Labels"][LABEL_TASK_ID]: call_sync(engine.inspect_container, c["Id"])
            for c in found if LABEL_TASK_ID in (c.get("Labels") or {})}
