"""Task states as Swarm reports them, and the status an executor hands to the dispatcher.

The numeric values are swarmkit's, so states compare the way Swarm's do: a task only moves
forward, and everything from COMPLETE on is terminal. The names are the lowercase strings the
Docker API shows (`docker service ps`).
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class TaskState(enum.IntEnum):
    NEW = 0
    PENDING = 64
    ASSIGNED = 192
    ACCEPTED = 256
    PREPARING = 320
    READY = 384
    STARTING = 512
    RUNNING = 768
    COMPLETE = 832
    SHUTDOWN = 896
    FAILED = 960
    REJECTED = 1024
    REMOVE = 1088
    ORPHANED = 1152

    def __str__(self) -> str:
        return self.name.lower()

    @property
    def terminal(self) -> bool:
        """Past RUNNING the task's container will never run again; only removal is left."""
        return self > TaskState.RUNNING


# Swarm's message for each state an executor moves to on its own. FAILED and REJECTED keep the
# message of the step that went wrong ("started", "preparing"); the reason is in `err`.
MESSAGES = {
    TaskState.ACCEPTED: "accepted",
    TaskState.PREPARING: "preparing",
    TaskState.READY: "prepared",
    TaskState.STARTING: "starting",
    TaskState.RUNNING: "started",
    TaskState.COMPLETE: "finished",
    TaskState.SHUTDOWN: "shutdown",
}


class TaskStatus(NamedTuple):
    """What the worker reports for a task (Swarm's TaskStatus with its ContainerStatus)."""

    state: TaskState
    message: str
    err: str = ""
    container_id: str = ""
    pid: int = 0
    exit_code: int | None = None
