"""Assigned tasks for the executor tests, made the way a worker gets them.

A task is written as the dispatcher pushes it (a Docker-spelled TaskSpec, durations in
nanoseconds) and read by the worker's own parser, so the executor tests exercise the real
conversion rather than a test-only constructor.
"""

from __future__ import annotations

import uuid
from typing import Any

from swarmkit_py.proto import AssignedTask
from swarmkit_py.store.objects.taskspec import SECOND
from swarmkit_py.worker.reconcile import parse_assignments

__all__ = ["SECOND", "assigned", "wire_task"]


def wire_task(
    task_id: str | None = None,
    *,
    node_id: str = "n1",
    slot: int | None = 1,
    service_id: str = "s1",
    service_name: str = "web",
    ports: list[dict[str, Any]] | None = None,
    networks: list[dict[str, Any]] | None = None,
    limits: dict[str, Any] | None = None,
    **container: Any,
) -> dict[str, Any]:
    """One entry of a ``dispatcher.assignments`` push. ``container`` are ContainerSpec fields
    by their Docker names (``Image``, ``Args``, ``StopGracePeriod``...); ``Image`` defaults
    to ``img``."""
    spec: dict[str, Any] = {"ContainerSpec": {"Image": "img", **container}}
    if limits:
        spec["Resources"] = {"Limits": limits}
    return {
        "id": task_id or uuid.uuid4().hex[:25],
        "name": f"{service_name}.{slot}",
        "service_id": service_id,
        "service_name": service_name,
        "slot": slot,
        "node_id": node_id,
        "desired_state": "running",
        "state": "assigned",
        "spec": spec,
        "ports": ports or [],
        "networks": networks or [],
    }


def assigned(task_id: str | None = None, **kw: Any) -> AssignedTask:
    """``wire_task(...)`` as the worker's reconcile reads it; fails if it would be rejected."""
    _, (assignment,) = parse_assignments({"seq": 1, "tasks": [wire_task(task_id, **kw)]})
    assert assignment.task is not None, assignment.error
    return assignment.task
