"""The scheduling core: pending tasks + nodes (+ what already runs where) -> decisions.

Pure and synchronous: no store, no clock, no I/O, so it is tested and benchmarked directly,
and the leader loop (loop.py) is a thin shell that feeds it and writes its decisions back.

How it stays fast (swarmkit's scheduleTaskGroup idea): tasks are grouped by service and
spec; each group's filters are compiled once, its candidate nodes are found with one pass
over the nodes, and its tasks are then placed one after another from heaps (see scoring.py),
so placing N tasks on M nodes costs about O(groups x M + N log M) rather than O(N x M).

Order of work: tasks with a preset node (global services) first, as in Swarm, so that a
replicated service cannot take the room a node's global task needs; then each group in the
order its first task was given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ...store.objects import Node, Task, TaskState
from ..allocator.needs import is_allocated
from .explain import READY, no_suitable_node
from .filters import TaskFilter
from .nodeinfo import NodeInfo, NodeSet, host_ports, is_active
from .scoring import SpreadTree, spread_descriptors

ASSIGNED_MESSAGE = "scheduler assigned task to node"
PREASSIGNED_MESSAGE = "scheduler confirmed task can run on preassigned node"


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict for one task. Placed: `node_id` is where it goes (for a preset task, its
    own node) and `err` is None. Not placed: `node_id` is None and `err` says why, in
    Swarm's words."""

    task: Task
    node_id: str | None
    err: str | None = None
    preassigned: bool = False

    @property
    def placed(self) -> bool:
        return self.node_id is not None

    @property
    def message(self) -> str:
        """The `status.message` a placed task gets (the one Swarm writes)."""
        return PREASSIGNED_MESSAGE if self.preassigned else ASSIGNED_MESSAGE


def is_schedulable(task: Task) -> bool:
    """A task the scheduler should act on: still pending, meant to run, and with its network
    addresses allocated (a container is created with them)."""
    return (task.status.state == TaskState.PENDING and task.desired_state <= TaskState.RUNNING
            and is_allocated(task))


def group_tasks(tasks: Iterable[Task]) -> list[list[Task]]:
    """Tasks of the same service with equal specs, in order of first appearance. The key is
    the spec's JSON (pydantic-core serialises in a few microseconds, faster than comparing
    nested models field by field, and a dict lookup stays O(1) however many spec versions a
    service has pending during an update)."""
    groups: dict[tuple[str, bytes, frozenset], list[Task]] = {}
    for t in tasks:
        key = (t.service_id, _SPEC_JSON(t.spec), host_ports(t))
        group = groups.get(key)
        if group is None:
            groups[key] = [t]
        else:
            group.append(t)
    return list(groups.values())


def _SPEC_JSON(spec) -> bytes:
    return spec.__pydantic_serializer__.to_json(spec)


def _schedule_preset(nodes: NodeSet, group: list[Task], out: list[Decision]) -> None:
    """Tasks created with their node (global services): confirm the node can take them."""
    flt = TaskFilter(group[0])
    for t in group:
        node_id = t.node_id or ""
        info = nodes.get(node_id)
        if info is None:
            out.append(Decision(t, None, no_suitable_node({READY: 1}), preassigned=True))
        elif flt.fits(info):
            nodes.place(t, node_id)
            out.append(Decision(t, node_id, None, preassigned=True))
        else:
            out.append(Decision(t, None, no_suitable_node(flt.failures([info])), preassigned=True))


def _schedule_group(nodes: NodeSet, group: list[Task], out: list[Decision]) -> None:
    flt = TaskFilter(group[0])
    tree = SpreadTree(nodes, flt, spread_descriptors(group[0].spec))
    record = nodes.record_use
    sid, cpu, mem, ports = flt.service_id, flt.cpu, flt.mem, flt.host_ports
    for i, t in enumerate(group):
        active = is_active(t)

        def place(info: NodeInfo, tid: str = t.id, active: bool = active) -> None:
            record(tid, info.id, sid, cpu, mem, active, ports)

        info = tree.take(place)
        if info is None:
            err = no_suitable_node(flt.failures(nodes))
            out.extend(Decision(rest, None, err) for rest in group[i:])
            return
        out.append(Decision(t, info.id))


def schedule_tasks(nodes: NodeSet, pending: Iterable[Task]) -> list[Decision]:
    """Decide for every task in `pending`; placements are recorded in `nodes` as they are
    made (undo one with `nodes.forget(task_id)` if it cannot be committed)."""
    preset: list[Task] = []
    free: list[Task] = []
    for t in pending:
        (preset if t.node_id else free).append(t)
    out: list[Decision] = []
    for group in group_tasks(preset):
        _schedule_preset(nodes, group, out)
    for group in group_tasks(free):
        _schedule_group(nodes, group, out)
    return out


class Scheduler:
    """The in-memory scheduler. Either give it the world on each call
    (`schedule(pending, nodes, tasks_by_node)`), or keep one `NodeSet` up to date and call
    `schedule(pending)` (what the leader loop does)."""

    def __init__(self, nodes: NodeSet | None = None) -> None:
        self.nodes = nodes if nodes is not None else NodeSet()

    def schedule(
        self,
        pending_tasks: Iterable[Task],
        nodes: Iterable[Node] | None = None,
        tasks_by_node: Mapping[str, Iterable[Task]] | None = None,
    ) -> list[Decision]:
        """Decisions for `pending_tasks`. With `nodes`, the node set is rebuilt from them and
        `tasks_by_node` (node id -> tasks already there); otherwise the current one is used.
        Either way, the placements made are kept for the next call."""
        if nodes is not None:
            self.nodes = NodeSet.build(nodes, tasks_by_node)
        return schedule_tasks(self.nodes, pending_tasks)


__all__ = [
    "ASSIGNED_MESSAGE",
    "PREASSIGNED_MESSAGE",
    "Decision",
    "Scheduler",
    "group_tasks",
    "is_schedulable",
    "schedule_tasks",
]
