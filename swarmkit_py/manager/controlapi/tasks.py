"""Tasks in the control API: list with dockerd's filters, inspect, and the task JSON.

Filters follow dockerd (daemon/cluster/tasks.go) and swarmkit's ListTasks:
- `service` and `node` take IDs, names (hostnames) or unique ID prefixes, resolved first; an
  unknown one is a 404, as in dockerd;
- `desired-state` is running | shutdown | accepted; `shutdown` also matches `remove` (both
  mean "stop it", and the CLI's `-f desired-state=shutdown` is asking for stopped history);
- `id` and `name` are prefixes (`name` of `web.1.<id>`, so `name=web.1.` selects slot 1);
- `label` is `key` or `key=value`;
- `_up-to-date` keeps tasks whose spec is the service's current TaskTemplate. The CLI's
  convergence loop depends on it: ignored, old running tasks look converged.

"Up to date" is orchestrator/uptodate.py's rule, the one the update supervisor replaces
tasks by: if the two disagreed, `docker service update` would report convergence before, or
long after, the rollout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...store import Service, Task, TaskState, format_rfc3339
from ..orchestrator.uptodate import UpToDate
from .errors import InvalidArgument
from .filters import labels_match, parse_labels, validate_filters

TASK_FILTERS = frozenset(
    {"id", "name", "label", "service", "node", "desired-state", "_up-to-date", "runtime"}
)
_DESIRED = {"running": TaskState.RUNNING, "shutdown": TaskState.SHUTDOWN,
            "accepted": TaskState.ACCEPTED}


def task_name(task: Task, service: Service | None) -> str:
    """swarmkit's naming.Task: `<service>.<slot or node>.<task id>` unless the task has one."""
    if task.name:
        return task.name
    service_name = service.spec.name if service is not None else ""
    slot = str(task.slot) if task.slot else (task.node_id or "")
    return f"{service_name}.{slot}.{task.id}"


class TaskMethods:
    """Mixed into ControlAPI, which provides `store` and `_reading`."""

    async def list_tasks(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[Task]:
        f = validate_filters(filters, TASK_FILTERS)
        async with self._reading() as view:
            return self._tasks_in(view, f)

    def _tasks_in(self, view, f: Mapping[str, Sequence[str]]) -> list[Task]:
        service_ids = list(dict.fromkeys(view.lookup("service", r).id for r in f.get("service", [])))
        node_ids = {view.lookup("node", r).id for r in f.get("node", [])}
        desired = set()
        for value in f.get("desired-state", []):
            if value not in _DESIRED:
                raise InvalidArgument(f"Invalid desired-state filter: '{value}'", plain=True)
            desired.add(_DESIRED[value])
        for value in f.get("runtime", []):
            if value != "container":
                raise InvalidArgument(f"Invalid filter: 'runtime'='{value}'", plain=True)
        if service_ids:
            candidates = [t for sid in service_ids for t in view.tasks(service_id=sid)]
        elif node_ids:
            candidates = [t for nid in node_ids for t in view.tasks(node_id=nid)]
        else:
            candidates = view.list("task")
        ids, names = f.get("id", []), f.get("name", [])
        labels = parse_labels(f.get("label", []))
        up_to_date = "_up-to-date" in f
        services: dict[str, Service | None] = {}
        checks: dict[str, UpToDate | None] = {}

        def service_of(task: Task) -> Service | None:
            if task.service_id not in services:
                services[task.service_id] = view.get_service(task.service_id)
            return services[task.service_id]

        def is_current(task: Task) -> bool:
            if task.service_id not in checks:
                svc = service_of(task)
                checks[task.service_id] = UpToDate(svc) if svc is not None else None
            check = checks[task.service_id]
            return check is not None and check(task)

        out = []
        for task in candidates:
            if node_ids and task.node_id not in node_ids:
                continue
            if ids and not any(task.id.startswith(p) for p in ids):
                continue
            if desired and not _desired_matches(task.desired_state, desired):
                continue
            if labels and not labels_match(task.labels, labels):
                continue
            if names:
                name = task_name(task, service_of(task))
                if not any(name.startswith(p) for p in names):
                    continue
            if up_to_date and not is_current(task):
                continue
            out.append(task)
        return out

    async def get_task(self, ref: str) -> Task:
        """By ID or unique ID prefix."""
        async with self._reading() as view:
            return view.lookup("task", ref)


def _desired_matches(state: TaskState, wanted: set[TaskState]) -> bool:
    if state in wanted:
        return True
    return TaskState.SHUTDOWN in wanted and state > TaskState.SHUTDOWN


def task_json(task: Task) -> dict[str, Any]:
    """The Task object of the Docker API. `Spec.ContainerSpec` and `Status.Timestamp` are
    always present: `docker service ps` dereferences the first and prints the second."""
    out = task.to_api()
    out.setdefault("Spec", {}).setdefault("ContainerSpec", {})
    status = out.setdefault("Status", {})
    if "Timestamp" not in status:
        stamp = task.updated_at or task.created_at
        if stamp is not None:
            status["Timestamp"] = format_rfc3339(stamp)
    return out
