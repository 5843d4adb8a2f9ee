"""New tasks, as every loop creates them (swarmkit's orchestrator.NewTask).

Why one function: a task's identity fields (slot or node, name, spec copy) must be the same
whichever loop made it - the replicated orchestrator filling a slot, the restart supervisor
replacing a failed task, the node-failure loop moving work off a dead host, or the update
supervisor rolling a new spec - or `docker service ps` and the up-to-date check disagree.
"""

from __future__ import annotations

from datetime import datetime

from ...store import Endpoint, Service, Task, TaskSpec, TaskState, TaskStatus, Version

PENDING_MESSAGE = "pending task scheduling"


def task_name(service: Service, slot: int | None = None, node_id: str | None = None) -> str:
    """`web.3` for a replicated slot, `web.<node id>` for a global service's task."""
    suffix = slot if slot is not None else node_id
    return f"{service.spec.name}.{suffix}"


def new_task(
    service: Service,
    task_id: str,
    now: datetime,
    *,
    slot: int | None = None,
    node_id: str | None = None,
    parts: TaskParts | None = None,
) -> Task:
    """A task for `slot` (replicated) or `node_id` (global), born `pending` with desired
    `running` (there is no allocator stage here; see docs/design/tasks.md). Global tasks come
    with their node preset; the scheduler only checks resources for them. A job's task
    belongs to the job's current iteration.

    `parts`: the spec and endpoint to use (`template_parts(service)`) instead of making a
    copy of each. The deep copy is most of a new task's cost, and tasks never changed once
    made may share one: the orchestrators' passes share one per service. The leader's store
    keeps these very objects (`apply_local`), as the other managers share the equal parts of
    the tasks they decode (store/intern.py)."""
    if (slot is None) == (node_id is None):
        raise ValueError("a task needs either a slot (replicated) or a node (global)")
    spec, endpoint = parts or template_parts(service)
    return Task(
        id=task_id,
        name=task_name(service, slot, node_id),
        labels=dict(service.spec.labels),
        spec=spec,
        service_id=service.id,
        slot=slot,
        node_id=node_id,
        status=TaskStatus(timestamp=now, state=TaskState.PENDING, message=PENDING_MESSAGE),
        desired_state=TaskState.RUNNING,
        endpoint=endpoint,
        job_iteration=(Version(index=service.job_status.job_iteration.index)
                       if service.job_status is not None else None),
    )


TaskParts = tuple[TaskSpec, "Endpoint | None"]
"""A new task's spec and endpoint (`template_parts`)."""


def template_parts(service: Service) -> TaskParts:
    """Copies of the service's task template and of its endpoint, for new tasks to share."""
    return template_copy(service), task_endpoint(service)


def template_copy(service: Service) -> TaskSpec:
    return service.spec.task_template.model_copy(deep=True)


def task_endpoint(service: Service) -> Endpoint | None:
    """The endpoint a task is born with and keeps (swarmkit's NewTask): its spec is the
    service's at that moment. The dispatcher sends the worker these ports, never the live
    service's, so a replacement made after `--publish-add` and an older container cannot
    disagree silently: the older one is out of date (uptodate.py) and gets rolled."""
    spec = service.spec.endpoint_spec
    if spec is None:
        return None
    return Endpoint(spec=spec.model_copy(deep=True))
