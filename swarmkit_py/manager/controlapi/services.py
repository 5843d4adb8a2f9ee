"""Services in the control API: create, list, inspect, update (and rollback), remove.

This layer only writes specs; the orchestrators, scheduler and update supervisor watch the
store and do the rest (docs/design/tasks.md). What an update writes, and why:
- TaskTemplate changed (after filling defaults, see servicespec.canonical_template):
  `PreviousSpec` = the old spec and `UpdateStatus` cleared, as swarmkit does; the update
  supervisor sees out-of-date tasks and starts the rolling update.
- Anything else (a scale, labels, update config, an identical spec): the stored template is
  kept byte for byte so no task becomes out of date, and `PreviousSpec` is left alone, so
  `docker service rollback` still undoes the last *template* change rather than a scale.
  A pure scale changes nothing but `Replicas`, whatever shape the client echoed the rest in
  (the SDK sends the defaults it read with insertDefaults=true).
- Any update clears a *paused* UpdateStatus: that is how Swarm resumes a paused update
  (`docker service update <svc>`).
- `rollback=previous` swaps Spec and PreviousSpec and sets `rollback_started` with
  "manually requested rollback"; the body (the client's current spec) is validated, as
  swarmkit does, but not used.
- A job (ReplicatedJob/GlobalJob) gets a `JobStatus` at create; every update of it, as in
  swarmkit, starts the next iteration (`docker service update --force job` runs it again):
  the job orchestrator retires the old iteration's tasks and runs the new one.

`warnings` (create and update): the unknown keys that were dropped (taskfields.py) are
appended, for the response's `Warnings`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...store import (
    JobStatus,
    NodeState,
    Service,
    ServiceSpec,
    TaskState,
    Transaction,
    UpdateState,
    UpdateStatus,
    Version,
    new_id,
)
from ..orchestrator.uptodate import endpoint_key
from .errors import FailedPrecondition, InvalidArgument, NotInSwarm
from .filters import labels_match, parse_labels, validate_filters
from .servicespec import (
    canonical_spec,
    parse_service_spec,
    same_template,
    spec_with_defaults,
)

SERVICE_FILTERS = frozenset({"id", "name", "label", "mode", "runtime"})
ROLLBACK_MESSAGE = "manually requested rollback"
_PAUSED = (UpdateState.PAUSED, UpdateState.ROLLBACK_PAUSED)
_MODE_FILTERS = {"Replicated": "replicated", "Global": "global",
                 "ReplicatedJob": "replicated-job", "GlobalJob": "global-job"}


class ServiceMethods:
    """Mixed into ControlAPI, which provides `store`, `ctx`, `_reading`, `_check_version` and
    `_as_new_as`."""

    def _swarm_view(self):
        view = self.store.view()
        if view.cluster() is None:
            raise NotInSwarm()
        return view

    async def list_services(
        self, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[Service]:
        return (await self.list_services_with_status(filters, status=False))[0]

    async def list_services_with_status(
        self, filters: Mapping[str, Sequence[str]] | None = None, *, status: bool = True
    ) -> tuple[list[Service], dict[str, dict[str, int]]]:
        """The services matching `filters` and, with `status`, their `service_statuses`, read
        from one state of the store."""
        where = service_filter(filters)
        async with self._reading() as view:
            services = view.list("service")
            if where:
                services = [s for s in services if where(s)]
            return services, self.service_statuses(services, view) if status else {}

    async def get_service(self, ref: str) -> Service:
        """By ID, name or unique ID prefix."""
        async with self._reading() as view:
            return view.lookup("service", ref)

    def service_statuses(self, services: Sequence[Service], view=None) -> dict[str, dict[str, int]]:
        """dockerd's ServiceStatus per service (what `docker service ls` shows as N/M).

        Running counts tasks observed running that are meant to keep running, on nodes that
        are not down (the CLI's own rule when it counts); desired is the replica count, or
        for a global service the tasks the orchestrator wants running. For a job (swarmkit's
        rules) only the current iteration's tasks count: desired is MaxConcurrent for a
        replicated job and, for a global job, its tasks not complete yet (the CLI shows
        "running/desired (completed/total completed)")."""
        view = view or self.store.view()
        down = {n.id for n in view.nodes(state=NodeState.DOWN)}
        out = {}
        running_on_down: dict[str, int] | None = None
        for svc in services:
            mode = svc.spec.mode
            if mode.replicated is not None and svc.job_status is None:
                # counted from the service_state index: no walk over its tasks
                if running_on_down is None:
                    running_on_down = _running_on(view, down)
                out[svc.id] = {
                    "RunningTasks": view.count("task", service_state=(svc.id, TaskState.RUNNING, True))
                    - running_on_down.get(svc.id, 0),
                    "DesiredTasks": mode.replicated.replicas,
                    "CompletedTasks": sum(view.count("task", service_state=(svc.id, TaskState.COMPLETE, alive))
                                          for alive in (True, False)),
                }
                continue
            iteration = svc.job_status.job_iteration.index if svc.job_status else None
            running = desired = completed = 0
            for task in view.tasks(service_id=svc.id):
                if iteration is not None and (task.job_iteration is None or
                                              task.job_iteration.index != iteration):
                    continue
                alive = task.desired_state <= TaskState.RUNNING
                if alive and task.status.state == TaskState.RUNNING and task.node_id not in down:
                    running += 1
                if task.status.state == TaskState.COMPLETE:
                    completed += 1
                elif mode.global_job is not None and alive:
                    desired += 1
                if mode.is_global and task.desired_state == TaskState.RUNNING:
                    desired += 1
            if mode.replicated is not None:
                desired = mode.replicated.replicas
            elif mode.replicated_job is not None:
                desired = mode.replicated_job.max_concurrent or 0
            out[svc.id] = {
                "RunningTasks": running,
                "DesiredTasks": desired,
                "CompletedTasks": completed,
            }
        return out

    async def create_service(self, spec: Any, *, warnings: list[str] | None = None) -> Service:
        new_spec = parse_service_spec(spec, warnings)
        self._resolve_service_networks(new_spec)
        service_id = new_id()
        if not new_spec.name:
            # dockerd names an unnamed service itself; an ID-derived name cannot collide
            # with a user's choice in practice and is still a valid DNS label.
            new_spec.name = f"svc-{service_id[:12]}"
        self._swarm_view()
        tx = Transaction()
        service = Service(id=service_id, spec=new_spec)
        if new_spec.mode.is_job:
            service.job_status = JobStatus(last_execution=tx.timestamp)
        result = await self.ctx.proposer.propose(tx.create(service))
        return next((o for o in result.objects if o.kind == "service"), service)

    async def update_service(
        self, ref: str, version: int, spec: Any, *, rollback: str | None = None,
        warnings: list[str] | None = None,
    ) -> Service:
        version = self._check_version(version)
        if rollback not in (None, "", "previous"):
            raise InvalidArgument(f"unrecognized rollback option {rollback}", plain=True)
        new_spec = parse_service_spec(spec, warnings)
        self._swarm_view()
        service: Service = await self._as_new_as("service", ref, version)
        self._resolve_service_networks(new_spec, service.id)
        tx = Transaction()
        if rollback == "previous":
            updated = rolled_back(service, tx)
        else:
            updated = updated_service(service, new_spec)
        if updated.job_status is not None:
            updated.job_status = next_iteration(updated.job_status, tx)
        updated.version = Version(index=version)
        result = await self.ctx.proposer.propose(tx.update(updated))
        return next((o for o in result.objects if o.kind == "service"), updated)

    def _resolve_service_networks(self, spec: ServiceSpec, service_id: str = "") -> None:
        tt = spec.task_template
        tt.networks = self.resolve_networks(tt.networks)
        spec.networks = self.resolve_networks(spec.networks)
        self.resolve_file_refs(spec)
        check_published_ports(self.store.view(), spec, service_id)

    async def remove_service(self, ref: str) -> None:
        """Delete the service; the orchestrators shut its tasks down and remove them."""
        service = self._swarm_view().lookup("service", ref)
        await self.ctx.proposer.propose(Transaction().delete("service", service.id))


def rolled_back(service: Service, tx: Transaction) -> Service:
    if service.previous_spec is None:
        raise FailedPrecondition(f"service {service.id} does not have a previous spec")
    status = UpdateStatus(
        state=UpdateState.ROLLBACK_STARTED, started_at=tx.timestamp, message=ROLLBACK_MESSAGE
    )
    return service.model_copy(
        update={
            "spec": service.previous_spec.clone(),
            "previous_spec": service.spec.clone(),
            "update_status": status,
        }
    )


def next_iteration(status: JobStatus, tx: Transaction) -> JobStatus:
    return JobStatus(job_iteration=Version(index=status.job_iteration.index + 1),
                     last_execution=tx.timestamp)


def updated_service(service: Service, new: ServiceSpec) -> Service:
    old = service.spec
    if not new.name:
        new.name = old.name
    if new.name != old.name:
        raise InvalidArgument("renaming services is not supported")
    if new.mode.modes() != old.mode.modes():
        raise InvalidArgument("service mode change is not allowed")
    status = service.update_status
    if status is not None and status.state in _PAUSED:
        status = None
    if canonical_spec(old, ignore_replicas=True) == canonical_spec(new, ignore_replicas=True):
        spec = old.clone()
        if spec.mode.replicated is not None and new.mode.replicated is not None:
            spec.mode.replicated.replicas = new.mode.replicated.replicas
        return service.model_copy(update={"spec": spec, "update_status": status})
    if same_template(old.task_template, new.task_template) and \
            endpoint_key(old.endpoint_spec) == endpoint_key(new.endpoint_spec):
        new.task_template = old.task_template.clone()
        return service.model_copy(update={"spec": new, "update_status": status})
    return service.model_copy(
        update={"spec": new, "previous_spec": old.clone(), "update_status": None}
    )


def check_published_ports(view, spec: ServiceSpec, service_id: str) -> None:
    """An ingress port is the whole cluster's: two services cannot publish the same one
    (Swarm's port allocator says so at create/update). Host-mode ports are per node, and the
    scheduler keeps two tasks from sharing one on the same node."""
    wanted = {(p.published_port, (p.protocol or "tcp").lower())
              for p in (spec.endpoint_spec.ports or [] if spec.endpoint_spec else [])
              if p.published_port and (p.publish_mode or "ingress").lower() == "ingress"}
    if not wanted:
        return
    for other in view.list("service"):
        if other.id == service_id:
            continue
        for p in ingress_ports(other):
            key = (p.published_port, (p.protocol or "tcp").lower())
            if key in wanted:
                raise InvalidArgument(
                    f"port '{p.published_port}' is already in use by service "
                    f"'{other.spec.name}' ({other.id}) as an ingress port: choose another "
                    "published port, or publish with mode=host")


def ingress_ports(service: Service) -> list:
    """The service's ingress-mode ports, with the published port the allocator gave a port
    that asked for none."""
    ports = service.endpoint.ports if service.endpoint and service.endpoint.ports else None
    if ports is None:
        ports = service.spec.endpoint_spec.ports or [] if service.spec.endpoint_spec else []
    return [p for p in ports if (p.publish_mode or "ingress").lower() == "ingress"]


def service_filter(filters: Mapping[str, Sequence[str]] | None):
    """Predicate for dockerd's service filters: id and name are prefixes (the CLI matches
    exactly itself), label is `key` or `key=value`, mode is replicated|global|replicated-job|
    global-job."""
    f = validate_filters(filters, SERVICE_FILTERS)
    if not f:
        return None
    modes = set()
    for m in f.get("mode", []):
        if m not in _MODE_FILTERS.values():
            raise InvalidArgument(f"Invalid filter: 'mode'='{m}'", plain=True)
        modes.add(m)
    for r in f.get("runtime", []):
        if r != "container":
            raise InvalidArgument(f"Invalid filter: 'runtime'='{r}'", plain=True)
    ids, names = f.get("id", []), f.get("name", [])
    labels = parse_labels(f.get("label", []))

    def match(svc: Service) -> bool:
        if ids and not any(svc.id.startswith(p) for p in ids):
            return False
        if names and not any(svc.spec.name.startswith(p) for p in names):
            return False
        if modes and _MODE_FILTERS.get(svc.spec.mode.modes()[0]) not in modes:
            return False
        return not labels or labels_match(svc.spec.labels, labels)

    return match


def endpoint_json(service: Service) -> dict[str, Any]:
    """Docker's Endpoint (the PORTS column of `service ls` reads it): the spec's ports with
    the published port the allocator chose for a port that asked for none, and the service's
    virtual IPs, one per network."""
    spec = service.spec
    ep_spec = spec.endpoint_spec.to_api() if spec.endpoint_spec is not None else {}
    out: dict[str, Any] = {"Spec": ep_spec}
    allocated = service.endpoint.ports if service.endpoint and service.endpoint.ports else None
    declared = spec.endpoint_spec.ports if spec.endpoint_spec is not None else None
    ports = []
    for i, port in enumerate(declared or []):
        entry: dict[str, Any] = {
            "Protocol": (port.protocol or "tcp").lower(),
            "TargetPort": port.target_port,
            "PublishMode": (port.publish_mode or "ingress").lower(),
        }
        if port.name:
            entry["Name"] = port.name
        published = port.published_port
        if not published and allocated is not None and i < len(allocated):
            published = allocated[i].published_port
        if published:
            entry["PublishedPort"] = published
        ports.append(entry)
    if ports:
        out["Ports"] = ports
    if service.endpoint is not None and service.endpoint.virtual_ips:
        out["VirtualIPs"] = [v.to_api() for v in service.endpoint.virtual_ips]
    return out


def service_json(
    service: Service, *, insert_defaults: bool = False, status: dict[str, int] | None = None
) -> dict[str, Any]:
    """The Service object of the Docker API."""
    out = service.to_api()
    if insert_defaults:
        out["Spec"] = spec_with_defaults(out.get("Spec") or {})
    out["Endpoint"] = endpoint_json(service)
    if status is not None:
        out["ServiceStatus"] = status
    return out


def _running_on(view, nodes: set[str]) -> dict[str, int]:
    """Per service, its tasks on `nodes` (the down ones) that run and are meant to: what
    `service_statuses` takes off a service's running count."""
    out: dict[str, int] = {}
    for node_id in nodes:
        for t in view.tasks(node_id=node_id):
            if t.status.state == TaskState.RUNNING and t.desired_state <= TaskState.RUNNING:
                out[t.service_id] = out.get(t.service_id, 0) + 1
    return out
