"""Tasks: one scheduled instance of a service, the unit a worker runs as a container."""

from __future__ import annotations

from pydantic import Field

from .base import DockerModel, StoreObject, Timestamp, Version
from .enums import TaskState
from .network import NetworkAttachment
from .service import Endpoint
from .taskspec import TaskSpec


class ContainerStatus(DockerModel):
    container_id: str | None = None
    pid: int | None = None
    exit_code: int | None = None


class TaskStatus(DockerModel):
    """Observed state as reported by the worker (or set by the scheduler while pending).
    `err` fills the ERROR column of `docker service ps`."""

    timestamp: Timestamp | None = None
    state: TaskState = TaskState.NEW
    message: str = ""
    err: str | None = None
    container_status: ContainerStatus | None = None


class Task(StoreObject):
    """`slot` is set for replicated services (1..N, what `web.<slot>` names show); global
    tasks have none and are named by node instead. `node_id` stays unset while pending."""

    kind = "task"

    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    spec: TaskSpec = Field(default_factory=TaskSpec)
    service_id: str = ""
    slot: int | None = None
    node_id: str | None = None
    status: TaskStatus = Field(default_factory=TaskStatus)
    desired_state: TaskState = TaskState.NEW
    endpoint: Endpoint | None = None
    """The service's endpoint as it was when the task was made (swarmkit's NewTask copies it):
    the ports a container publishes never change under it, and a task whose endpoint differs
    from its service's is out of date (a `--publish-add` rolls the tasks)."""
    job_iteration: Version | None = None
    """For a job's task, the run (Service.JobStatus.JobIteration) it belongs to."""
    networks_attachments: list[NetworkAttachment] | None = None
    """Addresses the allocator gave the task; None until then (for a task that needs any)."""
