"""The worker's half of the task wire contract, and the translation into executor specs.

The strings and shapes mirror ``manager/dispatcher/assignments.py`` (the push) and
``manager/dispatcher/taskstatus.py`` (the report): workers never import the manager package,
so they keep their own copy, and a unit test checks that both copies agree.

An assignment's ``spec`` is a Docker-shaped TaskSpec (durations in nanoseconds); it is read
with the store's model, which folds key spellings the way the API does, then turned into the
executor's small frozen ``TaskSpec`` (durations in seconds). A task whose spec cannot be run
(no image, malformed) is not an error of the worker: it becomes the task's ``rejected`` state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ...store.objects.taskspec import ContainerSpec
from ...store.objects.taskspec import TaskSpec as WireTaskSpec
from ..executor import HealthCheck, PortSpec, TaskSpec, TaskState, TaskStatus
from ..executor.spec import DEFAULT_STOP_GRACE, NetAttachment

log = logging.getLogger(__name__)

_NS = 1e9


def parse_state(raw: Any) -> TaskState:
    """A wire state name (``"running"``) as the executor's ordered enum; unknown -> NEW."""
    try:
        return TaskState[str(raw).upper()]
    except KeyError:
        return TaskState.NEW


@dataclass(frozen=True)
class Assignment:
    """One task of the pushed set. ``spec`` is None when ``error`` says why it cannot run."""

    task_id: str
    desired: TaskState
    state: TaskState
    spec: TaskSpec | None
    error: str | None = None


def executor_spec(task: Mapping[str, Any]) -> TaskSpec:
    """Raises ValueError (with a reason fit for the task's ``err``) when it cannot run."""
    try:
        wire = WireTaskSpec.model_validate(task.get("spec") or {})
    except ValidationError as e:
        raise ValueError(f"invalid task spec: {e}") from None
    cs = wire.container_spec or ContainerSpec()
    if not cs.image:
        raise ValueError("task spec has no image")
    limits = wire.resources.limits if wire.resources is not None else None
    hc = cs.healthcheck
    health = None
    if hc is not None and hc.test:
        health = HealthCheck(
            test=tuple(hc.test),
            interval=(hc.interval or 0) / _NS,
            timeout=(hc.timeout or 0) / _NS,
            retries=hc.retries or 0,
            start_period=(hc.start_period or 0) / _NS,
        )
    grace = DEFAULT_STOP_GRACE if cs.stop_grace_period is None else cs.stop_grace_period / _NS
    slot = task.get("slot")
    return TaskSpec(
        task_id=str(task["id"]),
        service_id=str(task.get("service_id") or ""),
        service_name=str(task.get("service_name") or task.get("service_id") or "task"),
        node_id=str(task["node_id"]),
        image=cs.image,
        slot=None if slot is None else int(slot),
        command=tuple(cs.command or ()),
        args=tuple(cs.args or ()),
        env=tuple(cs.env or ()),
        labels=dict(cs.labels or {}),
        ports=tuple(_port(p) for p in task.get("ports") or ()),
        nano_cpus=(limits.nano_cpus or 0) if limits is not None else 0,
        memory_bytes=(limits.memory_bytes or 0) if limits is not None else 0,
        stop_grace_period=grace,
        healthcheck=health,
        networks=tuple(NetAttachment.from_wire(n) for n in task.get("networks") or ()),
    )


def _port(p: Mapping[str, Any]) -> PortSpec:
    low = {str(k).lower(): v for k, v in p.items()}
    return PortSpec(
        target_port=int(low["targetport"]),
        published_port=int(low.get("publishedport") or 0),
        protocol=str(low.get("protocol") or "tcp"),
    )


def parse_assignments(params: Any) -> tuple[int, list[Assignment]]:
    """``(seq, tasks)`` of a push; raises ValueError only for a push that is not a set at all
    (a single bad task is returned with its ``error`` instead, so the others still run)."""
    if not isinstance(params, Mapping) or not isinstance(params.get("tasks"), list):
        raise ValueError("assignments push without a task list")
    out = []
    for raw in params["tasks"]:
        if not isinstance(raw, Mapping) or not raw.get("id") or not raw.get("node_id"):
            log.warning("ignoring a malformed assignment: %r", raw)
            continue
        desired, state = parse_state(raw.get("desired_state")), parse_state(raw.get("state"))
        try:
            out.append(Assignment(str(raw["id"]), desired, state, executor_spec(raw)))
        except (ValueError, TypeError, KeyError) as e:
            out.append(Assignment(str(raw["id"]), desired, state, None, str(e)))
    seq = params.get("seq")
    return (seq if isinstance(seq, int) else 0), out


def status_wire(task_id: str, status: TaskStatus, timestamp: float | None = None) -> dict[str, Any]:
    """One update of a ``dispatcher.task_status`` call."""
    update: dict[str, Any] = {
        "task_id": task_id,
        "state": str(status.state),
        "message": status.message,
        "timestamp": time.time() if timestamp is None else timestamp,
    }
    if status.err:
        update["err"] = status.err
    if status.container_id or status.exit_code is not None:
        update["container_status"] = {
            "container_id": status.container_id or None,
            "pid": status.pid or None,
            "exit_code": status.exit_code,
        }
    return update
