"""Which networks a service or task is on: the one rule the API, the allocator, the scheduler
and the dispatcher share.

A task is on the networks its spec names (`TaskTemplate.Networks[].Target`, network IDs: the
API resolves names when the service is written, as dockerd does) and, when its endpoint
publishes a port in `ingress` mode, on the `ingress` network too (the routing mesh reaches
tasks there), exactly as in Swarm.
"""

from __future__ import annotations

from ...store import EndpointSpec, Network, Service, Task, TaskSpec
from ...store.view import View


def spec_network_ids(spec: TaskSpec) -> list[str]:
    out = []
    for entry in spec.networks or []:
        target = entry.get("Target") if isinstance(entry, dict) else None
        if target and target not in out:
            out.append(target)
    return out


def has_ingress_ports(endpoint: EndpointSpec | None) -> bool:
    if endpoint is None:
        return False
    return any((p.publish_mode or "ingress").lower() == "ingress" for p in endpoint.ports or [])


def ingress_network(view: View) -> Network | None:
    for n in view.list("network"):
        if n.spec.ingress:
            return n
    return None


def service_network_ids(service: Service, ingress_id: str | None) -> list[str]:
    ids = spec_network_ids(service.spec.task_template)
    if ingress_id and has_ingress_ports(service.spec.endpoint_spec):
        ids.insert(0, ingress_id)
    return ids


def task_network_ids(task: Task, ingress_id: str | None) -> list[str]:
    ids = spec_network_ids(task.spec)
    endpoint = task.endpoint.spec if task.endpoint is not None else None
    if ingress_id and has_ingress_ports(endpoint):
        ids.insert(0, ingress_id)
    return ids


def wants_networks(task: Task) -> bool:
    """Whether this task needs addresses (readable from the task alone)."""
    endpoint = task.endpoint.spec if task.endpoint is not None else None
    return bool(spec_network_ids(task.spec)) or has_ingress_ports(endpoint)


def is_allocated(task: Task) -> bool:
    """The scheduler places a task only once its addresses exist (swarmkit's allocator runs
    before its scheduler for the same reason: a container is created with its address)."""
    return task.networks_attachments is not None or not wants_networks(task)


def holds_addresses(task: Task) -> bool:
    """A task's addresses are in use until it has ended (or never will run)."""
    return not task.status.state.terminal


def network_users(view: View, network: Network) -> list[str]:
    """Names of the services using a network (for "in use" refusals)."""
    users = []
    for svc in view.list("service"):
        if network.id in service_network_ids(svc, network.id if network.spec.ingress else None):
            users.append(svc.spec.name)
    return users
