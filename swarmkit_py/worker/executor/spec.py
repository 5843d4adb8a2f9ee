"""What the executor needs to know to run one task: the container half of Swarm's task.

Kept as small frozen dataclasses rather than the store's task model, so the executor can be
driven (and tested) without a manager: the worker translates an assignment into a TaskSpec.
Durations are seconds (floats), as operators write them; the adapter converts for the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Swarm's default stop grace period.
DEFAULT_STOP_GRACE = 10.0


@dataclass(frozen=True)
class PortSpec:
    """A host-mode published port: bound on this node only, as `mode=host` in Swarm."""

    target_port: int
    published_port: int = 0  # 0: the engine picks a free host port
    protocol: str = "tcp"
    host_ip: str = ""  # "": every address of the host, as Swarm does


@dataclass(frozen=True)
class NetAttachment:
    """One of a task's networks, as the assignment carries it."""

    network_id: str
    name: str
    subnet: str
    gateway: str
    vni: int
    address: str  # CIDR
    internal: bool = False
    ingress: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> NetAttachment:
        return cls(network_id=str(d["id"]), name=str(d["name"]), subnet=str(d["subnet"]),
                   gateway=str(d["gateway"]), vni=int(d["vni"]), address=str(d["address"]),
                   internal=bool(d.get("internal")), ingress=bool(d.get("ingress")),
                   aliases=tuple(d.get("aliases") or ()))


@dataclass(frozen=True)
class HealthCheck:
    """Overrides the image's health check; test ["NONE"] disables it. 0 means engine default."""

    test: tuple[str, ...]
    interval: float = 0.0
    timeout: float = 0.0
    retries: int = 0
    start_period: float = 0.0

    @property
    def disabled(self) -> bool:
        return not self.test or self.test[0] == "NONE"


@dataclass(frozen=True)
class TaskSpec:
    task_id: str
    service_id: str
    service_name: str
    node_id: str
    image: str
    slot: int | None = None  # None: a global service's task, named after its node instead
    command: tuple[str, ...] = ()  # replaces the image's entrypoint, as Swarm's Command
    args: tuple[str, ...] = ()  # replaces the image's cmd, as Swarm's Args
    env: tuple[str, ...] = ()  # "KEY=value"
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[PortSpec, ...] = ()
    nano_cpus: int = 0  # limit; 0 is unlimited
    memory_bytes: int = 0  # limit; 0 is unlimited
    stop_grace_period: float = DEFAULT_STOP_GRACE
    healthcheck: HealthCheck | None = None
    networks: tuple[NetAttachment, ...] = ()
    """Overlay addresses; the first network is the container's at creation, the others are
    connected before it starts. Empty: the engine's default network, as in Swarm."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskSpec:
        """Accept the loose shapes callers have at hand: env as a mapping or a list, limits
        flat or under `resources`, ports and health check as dicts, a shell string as the test."""
        resources = d.get("resources") or {}
        env = d.get("env") or ()
        if isinstance(env, Mapping):
            env = [f"{k}={v}" for k, v in env.items()]
        hc = d.get("healthcheck")
        if isinstance(hc, Mapping):
            test = hc.get("test") or ()
            hc = HealthCheck(
                test=("CMD-SHELL", test) if isinstance(test, str) else tuple(test),
                interval=float(hc.get("interval", 0)),
                timeout=float(hc.get("timeout", 0)),
                retries=int(hc.get("retries", 0)),
                start_period=float(hc.get("start_period", 0)),
            )
        slot = d.get("slot")
        return cls(
            task_id=d["task_id"],
            service_id=d["service_id"],
            service_name=d["service_name"],
            node_id=d["node_id"],
            image=d["image"],
            slot=None if slot is None else int(slot),
            command=tuple(d.get("command") or ()),
            args=tuple(d.get("args") or ()),
            env=tuple(env),
            labels=dict(d.get("labels") or {}),
            ports=tuple(p if isinstance(p, PortSpec) else PortSpec(**p)
                        for p in d.get("ports") or ()),
            nano_cpus=int(d.get("nano_cpus", resources.get("nano_cpus", 0))),
            memory_bytes=int(d.get("memory_bytes", resources.get("memory_bytes", 0))),
            stop_grace_period=float(d.get("stop_grace_period", DEFAULT_STOP_GRACE)),
            healthcheck=hc,
            networks=tuple(n if isinstance(n, NetAttachment) else NetAttachment.from_wire(n)
                           for n in d.get("networks") or ()),
        )

    @property
    def name(self) -> str:
        """Swarm's task name, also the container's: `<service>.<slot|node>.<task id>`."""
        middle = self.node_id if self.slot is None else str(self.slot)
        return f"{self.service_name}.{middle}.{self.task_id}"
