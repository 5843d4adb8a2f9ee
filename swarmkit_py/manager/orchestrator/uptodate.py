"""Is a task running the service's current TaskTemplate?

The one definition shared by the update supervisor (which tasks to replace) and the API's
`_up-to-date` task filter (which the docker CLI polls to show convergence): if they disagreed,
`docker service update` would report convergence before, or long after, the rollout.

Only the task template counts. Replicas, update/rollback configs, labels and endpoint are not
part of a task, so a pure scale (or changing the update parallelism) leaves every task up to
date and starts no rolling update.
"""

from __future__ import annotations

from ...store import Service, Task, TaskSpec


def spec_key(spec: TaskSpec) -> dict:
    """Canonical form: absent and null fields are the same thing (a client that sends
    `"Env": null` has not changed the spec)."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def same_spec(a: TaskSpec, b: TaskSpec) -> bool:
    return a == b or spec_key(a) == spec_key(b)


def is_up_to_date(task: Task, service: Service) -> bool:
    return same_spec(task.spec, service.spec.task_template)


def is_dirty(task: Task, service: Service) -> bool:
    return not is_up_to_date(task, service)
