"""An assignments push as the reconciler reads it.

The shapes are the dispatcher's contract (``proto/dispatcher.py``). One task that cannot be
run (malformed, no image) is not an error of the worker nor of the push: it becomes that task's
``rejected`` state, and the others of the set still run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...proto import AssignedTask, state_or_new
from ...store.objects import TaskState
from ..executor.docker_adapter import container_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assignment:
    """One task of the pushed set. ``task`` is None when ``error`` says why it cannot run."""

    task_id: str
    desired: TaskState
    state: TaskState
    task: AssignedTask | None
    error: str | None = None


def runnable(task: AssignedTask) -> AssignedTask:
    """``task``, or ValueError (with a reason fit for the task's ``err``) if it cannot run."""
    if not container_spec(task).image:
        raise ValueError("task spec has no image")
    for p in task.ports:
        if not p.target_port:
            raise ValueError("a published port has no target port")
    return task


@dataclass(frozen=True)
class Push:
    """One ``dispatcher.assignments`` push: a full set (``base`` None, ``tasks`` all of it),
    or the changes on top of the push whose seq is ``base``."""

    seq: int
    base: int | None
    tasks: list[Assignment]
    removed: list[str]


def parse_push(params: Any) -> Push:
    """Either shape of push (proto/dispatcher.py); ValueError only for one that is neither
    (a single bad task comes back with its ``error`` instead, so the others still run)."""
    if isinstance(params, Mapping) and "base" in params:
        base, removed = params.get("base"), params.get("removed")
        if not isinstance(base, int) or not isinstance(params.get("changed"), list) \
                or not isinstance(removed, list) or not all(isinstance(r, str) for r in removed):
            raise ValueError("assignment changes without base, changed and removed")
        seq = params.get("seq")
        return Push(seq if isinstance(seq, int) else 0, base, _assignments(params["changed"]), removed)
    seq, tasks = parse_assignments(params)
    return Push(seq, None, tasks, [])


def parse_assignments(params: Any) -> tuple[int, list[Assignment]]:
    """``(seq, tasks)`` of a full set; raises ValueError only for a push that is not a set at
    all (a single bad task is returned with its ``error`` instead, so the others still run)."""
    if not isinstance(params, Mapping) or not isinstance(params.get("tasks"), list):
        raise ValueError("assignments push without a task list")
    seq = params.get("seq")
    return (seq if isinstance(seq, int) else 0), _assignments(params["tasks"])


def _assignments(raws: list[Any]) -> list[Assignment]:
    out = []
    for raw in raws:
        if not isinstance(raw, Mapping) or not raw.get("id") or not raw.get("node_id"):
            log.warning("ignoring a malformed assignment: %r", raw)
            continue
        desired, state = state_or_new(raw.get("desired_state")), state_or_new(raw.get("state"))
        try:
            out.append(Assignment(str(raw["id"]), desired, state,
                                  runnable(AssignedTask.from_wire(raw))))
        except (ValueError, TypeError) as e:
            out.append(Assignment(str(raw["id"]), desired, state, None, str(e)))
    return out
