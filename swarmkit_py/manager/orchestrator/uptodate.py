"""Is a task running the service's current TaskTemplate?

The one definition shared by the update supervisor (which tasks to replace) and the API's
`_up-to-date` task filter (which the docker CLI polls to show convergence): if they disagreed,
`docker service update` would report convergence before, or long after, the rollout.

The task template and the endpoint spec count (swarmkit's IsTaskDirty: a task carries a copy
of both, and `--publish-add` must roll the tasks so their containers publish the new port).
Replicas, update/rollback configs and labels are not part of a task, so a pure scale (or
changing the update parallelism) leaves every task up to date and starts no rolling update.
"""

from __future__ import annotations

from ...store import EndpointSpec, Service, Task, TaskSpec


def spec_key(spec: TaskSpec) -> dict:
    """Canonical form: absent and null fields are the same thing (a client that sends
    `"Env": null` has not changed the spec)."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def same_spec(a: TaskSpec, b: TaskSpec) -> bool:
    return a == b or spec_key(a) == spec_key(b)


def endpoint_key(spec: EndpointSpec | None) -> dict:
    """Absent, empty and all-defaults endpoint specs are the same thing."""
    if spec is None:
        return {}
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    if data.get("Mode") == "vip":
        data.pop("Mode")
    if not data.get("Ports"):
        data.pop("Ports", None)
    return data


def is_up_to_date(task: Task, service: Service) -> bool:
    task_ep = task.endpoint.spec if task.endpoint is not None else None
    return same_spec(task.spec, service.spec.task_template) and \
        endpoint_key(task_ep) == endpoint_key(service.spec.endpoint_spec)


def is_dirty(task: Task, service: Service) -> bool:
    return not is_up_to_date(task, service)


class UpToDate:
    """`is_up_to_date` for many tasks of one service, in one synchronous pass (a `plan()`, an
    API filter): each distinct pair of spec and endpoint spec objects is compared once. The
    store gives a template's tasks one shared spec and endpoint (store/intern.py), so a pass
    over a new leader's 10,000 tasks compares a handful of pairs instead of 10,000.

    Keyed by identity, which is sound only while the pass lasts: the objects are stored ones
    (never changed in place) and the pass holds them, so no id is reused. Do not keep one
    across an `await`."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._verdicts: dict[tuple[int, int], bool] = {}

    def __call__(self, task: Task) -> bool:
        ep = task.endpoint.spec if task.endpoint is not None else None
        key = (id(task.spec), id(ep))
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = is_up_to_date(task, self.service)
        return verdict
