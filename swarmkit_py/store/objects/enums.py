"""Enumerations as the Docker API spells them: lowercase strings on the wire.

Being `StrEnum`s, members compare equal to their wire strings (`TaskState.RUNNING ==
"running"`), and unmarshal case-insensitively like Go does for these values.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class _WireEnum(StrEnum):
    @classmethod
    def _missing_(cls, value: Any) -> Any:
        if isinstance(value, str):
            lowered = value.lower()
            for member in cls:
                if member.value == lowered:
                    return member
        return None


class TaskState(_WireEnum):
    """A task's observed (or desired) life-cycle state.

    Ordered like Swarm's, because the orchestrators reason with comparisons: "desired state
    <= running" means the task should be alive, "state > running" means it has stopped, and a
    worker may only move a task forwards. The comparison operators therefore follow the life
    cycle, not the alphabet; plain strings on the other side are converted first."""

    NEW = "new"
    PENDING = "pending"
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    PREPARING = "preparing"
    READY = "ready"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETE = "complete"
    SHUTDOWN = "shutdown"
    FAILED = "failed"
    REJECTED = "rejected"
    REMOVE = "remove"
    ORPHANED = "orphaned"

    @property
    def rank(self) -> int:
        """Swarm's numeric value of the state (api.TaskState)."""
        return _TASK_RANK[self]

    @property
    def terminal(self) -> bool:
        """Past running: the container is gone or never will run."""
        return _TASK_RANK[self] > _TASK_RANK[TaskState.RUNNING]

    def _other_rank(self, other: Any) -> int | None:
        if isinstance(other, TaskState):
            return _TASK_RANK[other]
        if isinstance(other, str):
            return _TASK_RANK[TaskState(other)]
        return None

    def __lt__(self, other: Any) -> bool:
        if other.__class__ is TaskState:  # the common case, without a call (hot in every loop)
            return _TASK_RANK[self] < _TASK_RANK[other]
        r = self._other_rank(other)
        return NotImplemented if r is None else _TASK_RANK[self] < r

    def __le__(self, other: Any) -> bool:
        if other.__class__ is TaskState:  # the common case, without a call (hot in every loop)
            return _TASK_RANK[self] <= _TASK_RANK[other]
        r = self._other_rank(other)
        return NotImplemented if r is None else _TASK_RANK[self] <= r

    def __gt__(self, other: Any) -> bool:
        if other.__class__ is TaskState:  # the common case, without a call (hot in every loop)
            return _TASK_RANK[self] > _TASK_RANK[other]
        r = self._other_rank(other)
        return NotImplemented if r is None else _TASK_RANK[self] > r

    def __ge__(self, other: Any) -> bool:
        if other.__class__ is TaskState:  # the common case, without a call (hot in every loop)
            return _TASK_RANK[self] >= _TASK_RANK[other]
        r = self._other_rank(other)
        return NotImplemented if r is None else _TASK_RANK[self] >= r

    __hash__ = StrEnum.__hash__


_TASK_RANK: dict[TaskState, int] = {
    TaskState.NEW: 0,
    TaskState.PENDING: 64,
    TaskState.ASSIGNED: 192,
    TaskState.ACCEPTED: 256,
    TaskState.PREPARING: 320,
    TaskState.READY: 384,
    TaskState.STARTING: 448,
    TaskState.RUNNING: 512,
    TaskState.COMPLETE: 576,
    TaskState.SHUTDOWN: 640,
    TaskState.FAILED: 704,
    TaskState.REJECTED: 768,
    TaskState.REMOVE: 800,
    TaskState.ORPHANED: 832,
}


class NodeRole(_WireEnum):
    WORKER = "worker"
    MANAGER = "manager"


class NodeAvailability(_WireEnum):
    ACTIVE = "active"
    PAUSE = "pause"
    DRAIN = "drain"


class NodeState(_WireEnum):
    UNKNOWN = "unknown"
    DOWN = "down"
    READY = "ready"
    DISCONNECTED = "disconnected"


class Reachability(_WireEnum):
    UNKNOWN = "unknown"
    UNREACHABLE = "unreachable"
    REACHABLE = "reachable"


class UpdateState(_WireEnum):
    UPDATING = "updating"
    PAUSED = "paused"
    COMPLETED = "completed"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_PAUSED = "rollback_paused"
    ROLLBACK_COMPLETED = "rollback_completed"


class RestartCondition(_WireEnum):
    NONE = "none"
    ON_FAILURE = "on-failure"
    ANY = "any"


class FailureAction(_WireEnum):
    PAUSE = "pause"
    CONTINUE = "continue"
    ROLLBACK = "rollback"


class UpdateOrder(_WireEnum):
    STOP_FIRST = "stop-first"
    START_FIRST = "start-first"
