"""Builders shared by the scheduler tests (no tests here): nodes and tasks as the store holds
them, with only the fields a test cares about spelled out."""

from __future__ import annotations

from typing import Any

from swarmkit_py.store import Node, Task, new_id

GB = 2**30
CPU = 10**9


def node(
    id: str | None = None,
    *,
    hostname: str | None = None,
    labels: dict[str, str] | None = None,
    engine_labels: dict[str, str] | None = None,
    state: str = "ready",
    availability: str = "active",
    role: str = "worker",
    cpus: float = 4,
    memory: int = 8 * GB,
    os: str = "linux",
    arch: str = "x86_64",
    addr: str | None = None,
) -> Node:
    id = id or new_id()
    return Node.model_validate(
        {
            "ID": id,
            "Spec": {"Role": role, "Availability": availability, "Labels": labels or {}},
            "Description": {
                "Hostname": hostname or f"host-{id}",
                "Platform": {"OS": os, "Architecture": arch},
                "Resources": {"NanoCPUs": int(cpus * CPU), "MemoryBytes": memory},
                "Engine": {"Labels": engine_labels} if engine_labels is not None else {},
            },
            "Status": {"State": state, **({"Addr": addr} if addr else {})},
            "Role": role,
        }
    )


def spec(
    *,
    constraints: list[str] | None = None,
    spread: list[str] | None = None,
    cpus: float = 0,
    memory: int = 0,
    max_replicas: int | None = None,
    platforms: list[dict[str, str]] | None = None,
    image: str = "busybox",
) -> dict[str, Any]:
    placement: dict[str, Any] = {}
    if constraints:
        placement["Constraints"] = constraints
    if spread:
        placement["Preferences"] = [{"Spread": {"SpreadDescriptor": d}} for d in spread]
    if max_replicas is not None:
        placement["MaxReplicas"] = max_replicas
    if platforms is not None:
        placement["Platforms"] = platforms
    out: dict[str, Any] = {"ContainerSpec": {"Image": image}, "Placement": placement}
    if cpus or memory:
        out["Resources"] = {"Reservations": {"NanoCPUs": int(cpus * CPU), "MemoryBytes": memory}}
    return out


def task(
    service_id: str = "svc",
    task_spec: dict[str, Any] | None = None,
    *,
    slot: int | None = 1,
    state: str = "pending",
    desired: str = "running",
    node_id: str | None = None,
    id: str | None = None,
) -> Task:
    return Task.model_validate(
        {
            "ID": id or new_id(),
            "ServiceID": service_id,
            "Slot": slot,
            "Spec": task_spec if task_spec is not None else spec(),
            "DesiredState": desired,
            "NodeID": node_id,
            "Status": {
                "State": state,
                "Message": "pending task scheduling" if state == "pending" else "",
            },
        }
    )


def tasks(n: int, service_id: str = "svc", task_spec: dict[str, Any] | None = None) -> list[Task]:
    s = task_spec if task_spec is not None else spec()
    return [task(service_id, s, slot=i + 1) for i in range(n)]


def placements(decisions) -> dict[str, int]:
    """node id -> number of tasks placed there."""
    out: dict[str, int] = {}
    for d in decisions:
        if d.placed:
            out[d.node_id] = out.get(d.node_id, 0) + 1
    return out
