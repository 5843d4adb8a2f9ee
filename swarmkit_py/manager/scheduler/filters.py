"""Which nodes can take a task: Swarm's filter pipeline, compiled once per task group.

A group is all pending tasks of one service with the same spec, so every filter input
(constraints, reservations, platforms, max_replicas, service) is the same for the whole
group: constraints are parsed once, not once per task and node.

The filters split in two kinds, which is what makes group scheduling cheap:
- *static* ones (node ready and active, constraints, platform) depend only on the node, so
  they are evaluated once per node per group to build the candidate list;
- *dynamic* ones (free resources, max replicas per node) change as the group's own tasks
  land, so they are re-checked each time a node is picked.

For explanations, `first_failure` runs them in Swarm's order and names the first that
rejects the node (see explain.py).
"""

from __future__ import annotations

from ...store.objects import Task, TaskSpec
from .constraints import Constraint, ConstraintError, parse_constraints
from .explain import CONSTRAINTS, HOST_PORTS, MAX_REPLICAS, PLATFORM, READY, RESOURCES
from .nodeinfo import NodeInfo, host_ports, reservations

_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64"}


def _norm_arch(arch: str | None) -> str:
    arch = (arch or "").lower()
    return _ARCH_ALIASES.get(arch, arch)


def task_platforms(spec: TaskSpec) -> list[tuple[str, str]]:
    """`Placement.Platforms` as (os, arch) pairs, empty strings meaning "any"."""
    placement = spec.placement
    return [((p.os or "").lower(), _norm_arch(p.architecture))
            for p in (placement.platforms if placement is not None else None) or ()]


class TaskFilter:
    """The filter pipeline bound to one task group."""

    __slots__ = (
        "service_id",
        "constraints",
        "constraints_invalid",
        "cpu",
        "mem",
        "platforms",
        "max_replicas",
        "host_ports",
    )

    def __init__(self, task: Task) -> None:
        spec = task.spec
        self.service_id = task.service_id
        placement = spec.placement
        self.constraints: tuple[Constraint, ...] = ()
        self.constraints_invalid = False
        try:
            self.constraints = parse_constraints(placement.constraints if placement else None)
        except ConstraintError:
            # The API validates constraints, so this is a spec that bypassed it. Swarm then
            # ignores the constraints and places anywhere; placing nowhere is the safer reading
            # of "only on nodes matching <something we cannot read>".
            self.constraints_invalid = True
        self.cpu, self.mem = reservations(spec)
        self.platforms = task_platforms(spec)
        self.max_replicas = (placement.max_replicas or 0) if placement is not None else 0
        self.host_ports = host_ports(task)

    # -- individual filters -------------------------------------------------------------------

    def constraints_ok(self, info: NodeInfo) -> bool:
        if self.constraints_invalid:
            return False
        node = info.node
        for c in self.constraints:
            if not c.matches(node):
                return False
        return True

    def platform_ok(self, info: NodeInfo) -> bool:
        if not self.platforms:
            return True
        desc = info.node.description
        if desc is None or desc.platform is None:
            return False
        node_os = (desc.platform.os or "").lower()
        node_arch = _norm_arch(desc.platform.architecture)
        return any(
            (not os or os == node_os) and (not arch or arch == node_arch)
            for os, arch in self.platforms
        )

    def resources_ok(self, info: NodeInfo) -> bool:
        return self.cpu <= info.available_cpu and self.mem <= info.available_mem

    def max_replicas_ok(self, info: NodeInfo) -> bool:
        return self.max_replicas <= 0 or info.by_service.get(self.service_id, 0) < self.max_replicas

    # -- pipeline -----------------------------------------------------------------------------

    def static_ok(self, info: NodeInfo) -> bool:
        return info.ready and self.constraints_ok(info) and self.platform_ok(info)

    def dynamic_ok(self, info: NodeInfo) -> bool:
        if (self.cpu or self.mem) and not self.resources_ok(info):
            return False
        if self.host_ports and not info.ports_free(self.host_ports):
            return False
        return self.max_replicas_ok(info)

    def fits(self, info: NodeInfo) -> bool:
        return self.static_ok(info) and self.dynamic_ok(info)

    def first_failure(self, info: NodeInfo) -> str | None:
        """The first filter, in Swarm's order, that rejects this node (None: it fits)."""
        if not info.ready:
            return READY
        if (self.cpu or self.mem) and not self.resources_ok(info):
            return RESOURCES
        if (self.constraints or self.constraints_invalid) and not self.constraints_ok(info):
            return CONSTRAINTS
        if not self.platform_ok(info):
            return PLATFORM
        if self.host_ports and not info.ports_free(self.host_ports):
            return HOST_PORTS
        if not self.max_replicas_ok(info):
            return MAX_REPLICAS
        return None

    def failures(self, infos) -> dict[str, int]:
        """Per-filter rejection counts over `infos`, for `explain.no_suitable_node`."""
        counts: dict[str, int] = {}
        for info in infos:
            name = self.first_failure(info)
            if name is not None:
                counts[name] = counts.get(name, 0) + 1
        return counts


__all__ = ["TaskFilter", "task_platforms"]
