"""What the scheduler knows about each node: the node object, the resources still free, and
how many active tasks it runs (in total and per service).

Why a separate, incrementally maintained set rather than a fresh scan of the store per
decision: scoring needs per-node counts for every candidate, and recounting 10,000 tasks for
each of a few hundred scheduling batches is what makes a naive scheduler slow. The loop feeds
every task and node event here (`observe_task`, `add_or_update_node`), and the core records
its own placements (`place`) so the next task in the same batch sees them.

Accounting rules, as in swarmkit's NodeInfo:
- a task *uses resources* on its node from `assigned` up to `running` (a `pending` task with a
  preset node, e.g. a global one, uses nothing until the scheduler has confirmed it fits);
- a task is *active* (counts for balancing and `max_replicas`) while its desired state is at
  most `complete`: a task being shut down still holds its reservation but no longer counts
  as one of the service's replicas.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ...store.objects import Node, NodeAvailability, NodeState, Task, TaskSpec, TaskState


def reservations(spec: TaskSpec | None) -> tuple[int, int]:
    """(nano_cpus, memory_bytes) a task spec reserves; 0 when unset."""
    if spec is None or spec.resources is None or spec.resources.reservations is None:
        return 0, 0
    r = spec.resources.reservations
    return r.nano_cpus or 0, r.memory_bytes or 0


def host_ports(task: Task) -> frozenset[tuple[int, str]]:
    """The (port, protocol) pairs a task binds on its node: its endpoint's host-mode ports
    with a fixed published port (0 lets the engine pick one, which cannot collide)."""
    spec = task.endpoint.spec if task.endpoint is not None else None
    if spec is None or not spec.ports:
        return frozenset()
    return frozenset(
        (p.published_port, (p.protocol or "tcp").lower()) for p in spec.ports
        if (p.publish_mode or "").lower() == "host" and p.published_port
    )


_COMPLETE_RANK = TaskState.COMPLETE.rank


def is_active(task: Task) -> bool:
    return task.desired_state.rank <= _COMPLETE_RANK


def uses_node(task: Task) -> bool:
    """Does this task hold resources on `task.node_id` now?"""
    return bool(task.node_id) and TaskState.ASSIGNED <= task.status.state <= TaskState.RUNNING


@dataclass(slots=True)
class TaskUse:
    """One task's footprint on one node (kept so an update can be undone exactly)."""

    node_id: str
    service_id: str
    cpu: int
    mem: int
    active: bool
    ports: frozenset = frozenset()


class NodeInfo:
    __slots__ = (
        "node",
        "id",
        "ready",
        "total_cpu",
        "total_mem",
        "reserved_cpu",
        "reserved_mem",
        "active_tasks",
        "by_service",
        "order",
        "ports",
    )

    def __init__(self, node: Node, order: int) -> None:
        self.id = node.id
        self.order = order
        """Insertion rank: the deterministic last tie-break between equal nodes."""
        self.reserved_cpu = 0
        self.reserved_mem = 0
        self.active_tasks = 0
        self.by_service: dict[str, int] = {}
        self.ports: dict[tuple[int, str], int] = {}
        """Host-mode ports bound here, with how many tasks hold each (more than one only
        when the store already had a collision)."""
        self.set_node(node)

    def set_node(self, node: Node) -> None:
        self.node = node
        self.ready = (
            node.status.state == NodeState.READY
            and node.spec.availability == NodeAvailability.ACTIVE
        )
        res = node.description.resources if node.description is not None else None
        self.total_cpu = (res.nano_cpus or 0) if res is not None else 0
        self.total_mem = (res.memory_bytes or 0) if res is not None else 0

    @property
    def available_cpu(self) -> int:
        return self.total_cpu - self.reserved_cpu

    @property
    def available_mem(self) -> int:
        return self.total_mem - self.reserved_mem

    def service_tasks(self, service_id: str) -> int:
        return self.by_service.get(service_id, 0)

    def ports_free(self, wanted: frozenset) -> bool:
        return not wanted or not any(p in self.ports for p in wanted)

    def _apply(self, use: TaskUse, sign: int) -> None:
        for port in use.ports:
            n = self.ports.get(port, 0) + sign
            if n > 0:
                self.ports[port] = n
            else:
                self.ports.pop(port, None)
        self.reserved_cpu += sign * use.cpu
        self.reserved_mem += sign * use.mem
        if use.active:
            self.active_tasks += sign
            n = self.by_service.get(use.service_id, 0) + sign
            if n:
                self.by_service[use.service_id] = n
            else:
                self.by_service.pop(use.service_id, None)

    def __repr__(self) -> str:
        return (
            f"NodeInfo({self.id!r}, ready={self.ready}, tasks={self.active_tasks}, "
            f"free_cpu={self.available_cpu}, free_mem={self.available_mem})"
        )


class NodeSet:
    """All nodes with their footprint. Task footprints are kept even for nodes not (yet)
    known, so the order in which node and task events arrive does not matter."""

    def __init__(self) -> None:
        self.infos: dict[str, NodeInfo] = {}
        self._uses: dict[str, TaskUse] = {}
        self._by_node: dict[str, dict[str, None]] = {}
        self._order = 0

    @classmethod
    def build(
        cls, nodes: Iterable[Node], tasks_by_node: Mapping[str, Iterable[Task]] | None = None
    ) -> NodeSet:
        """A set from plain lists. Every non-terminal task listed under a node counts there
        (whatever its own `node_id` says): the caller says where tasks already are."""
        ns = cls()
        for node in nodes:
            ns.add_or_update_node(node)
        for node_id, tasks in (tasks_by_node or {}).items():
            for t in tasks:
                if t.status.state <= TaskState.RUNNING:
                    ns.record(t.id, node_id, t.service_id, t.spec, is_active(t), host_ports(t))
        return ns

    def __len__(self) -> int:
        return len(self.infos)

    def __iter__(self) -> Iterator[NodeInfo]:
        return iter(self.infos.values())

    def get(self, node_id: str) -> NodeInfo | None:
        return self.infos.get(node_id)

    # -- nodes ------------------------------------------------------------------------------

    def add_or_update_node(self, node: Node) -> NodeInfo:
        info = self.infos.get(node.id)
        if info is not None:
            info.set_node(node)
            return info
        info = NodeInfo(node, self._order)
        self._order += 1
        for task_id in self._by_node.get(node.id, ()):
            info._apply(self._uses[task_id], +1)
        self.infos[node.id] = info
        return info

    def remove_node(self, node_id: str) -> None:
        self.infos.pop(node_id, None)

    # -- tasks ------------------------------------------------------------------------------

    def observe_task(self, task: Task) -> None:
        """Follow a task as the store has it now (create or update event)."""
        if uses_node(task):
            self.record(task.id, task.node_id or "", task.service_id, task.spec, is_active(task),
                        host_ports(task))
        else:
            self.forget(task.id)

    def record(
        self, task_id: str, node_id: str, service_id: str, spec: TaskSpec | None, active: bool,
        ports: frozenset = frozenset(),
    ) -> None:
        cpu, mem = reservations(spec)
        self.record_use(task_id, node_id, service_id, cpu, mem, active, ports)

    def record_use(
        self, task_id: str, node_id: str, service_id: str, cpu: int, mem: int, active: bool,
        ports: frozenset = frozenset(),
    ) -> None:
        """`record` with the reservations already known (the core's hot path)."""
        new = TaskUse(node_id, service_id, cpu, mem, active, ports)
        old = self._uses.get(task_id)
        if old == new:
            return
        if old is not None:
            self.forget(task_id)
        self._uses[task_id] = new
        self._by_node.setdefault(node_id, {})[task_id] = None
        info = self.infos.get(node_id)
        if info is not None:
            info._apply(new, +1)

    def forget(self, task_id: str) -> None:
        """The task no longer holds anything (deleted, finished, or a tentative placement
        that was not committed)."""
        old = self._uses.pop(task_id, None)
        if old is None:
            return
        bucket = self._by_node.get(old.node_id)
        if bucket is not None:
            bucket.pop(task_id, None)
            if not bucket:
                del self._by_node[old.node_id]
        info = self.infos.get(old.node_id)
        if info is not None:
            info._apply(old, -1)

    def place(self, task: Task, node_id: str) -> None:
        """Record a placement decided by the scheduler (before it is committed)."""
        self.record(task.id, node_id, task.service_id, task.spec, is_active(task),
                    host_ports(task))

    def holds(self, task_id: str) -> str | None:
        """The node a task is counted on, if any."""
        use = self._uses.get(task_id)
        return use.node_id if use is not None else None


__all__ = ["NodeInfo", "NodeSet", "TaskUse", "host_ports", "is_active", "reservations",
           "uses_node"]
