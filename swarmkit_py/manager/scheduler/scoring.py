"""Where a group's tasks go among the nodes that pass the filters: spread preferences first,
then the node with the fewest tasks of the service, then the one with the fewest tasks.

Spread preferences form a tree, as in Swarm: the first preference splits the nodes by the
value of its descriptor (`node.labels.dc`), each branch is split again by the second
(`node.labels.rack`), and so on; nodes lacking the label share the "" branch, so a label
missing on some nodes does not distort the tree. Each branch knows how many active tasks of
the service it already holds (on every node, eligible or not, exactly as Swarm counts).

Placing one task walks down the tree taking, at each level, the branch with the fewest tasks
of the service (ties: branch values in sorted order, for reproducible placements), and at the
leaf the best node. A branch or node that turns out full (resources, max replicas) is closed
for the rest of the group. This greedy water-filling gives the same even split as swarmkit's
per-level arithmetic, in O(log) per task with heaps at every level, which is what lets a
10,000-task group be placed in a fraction of a second.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from ...store.objects import Node, TaskSpec
from .constraints import ENGINE_LABEL_PREFIX, NODE_LABEL_PREFIX
from .filters import TaskFilter
from .nodeinfo import NodeInfo

Place = Callable[[NodeInfo], None]


def spread_descriptors(spec: TaskSpec) -> list[str]:
    """The spread descriptors Swarm honours (node and engine labels); others are skipped."""
    placement = spec.placement
    out = []
    for pref in (placement.preferences if placement is not None else None) or ():
        if pref.spread is None:
            continue
        d = pref.spread.spread_descriptor
        low = d.lower()
        for prefix in (NODE_LABEL_PREFIX, ENGINE_LABEL_PREFIX):
            if len(d) > len(prefix) and low.startswith(prefix):
                out.append(d)
                break
    return out


def spread_value(node: Node, descriptor: str) -> str:
    """The node's value for a spread descriptor ("" when the label is absent)."""
    low = descriptor.lower()
    if low.startswith(NODE_LABEL_PREFIX):
        return node.spec.labels.get(descriptor[len(NODE_LABEL_PREFIX) :], "")
    desc = node.description
    if desc is None or desc.engine is None or not desc.engine.labels:
        return ""
    return desc.engine.labels.get(descriptor[len(ENGINE_LABEL_PREFIX) :], "")


class Leaf:
    """Candidate nodes of one branch, best first: (service tasks, all tasks, node order)."""

    __slots__ = ("heap",)

    def __init__(self, infos: list[NodeInfo], service_id: str) -> None:
        self.heap = [(i.by_service.get(service_id, 0), i.active_tasks, i.order, i) for i in infos]
        heapq.heapify(self.heap)

    def take(self, flt: TaskFilter, place: Place) -> NodeInfo | None:
        """Place one task on the best node that still has room (nodes found full are
        dropped for the rest of the group), then re-rank that node."""
        heap = self.heap
        while heap:
            info = heap[0][3]
            if flt.dynamic_ok(info):
                place(info)
                heapq.heapreplace(
                    heap,
                    (info.by_service.get(flt.service_id, 0), info.active_tasks, info.order, info),
                )
                return info
            heapq.heappop(heap)
        return None


class Branch:
    """A node of the spread tree; a branch without children holds a `Leaf`."""

    __slots__ = ("tasks", "children", "heap", "leaf", "candidates")

    def __init__(self) -> None:
        self.tasks = 0
        """Active tasks of the service on all nodes under this branch."""
        self.children: dict[str, Branch] = {}
        self.heap: list[tuple[int, int, Branch]] = []
        self.leaf: Leaf | None = None
        self.candidates: list[NodeInfo] = []

    def finish(self, service_id: str) -> None:
        if not self.children:
            self.leaf = Leaf(self.candidates, service_id)
            self.candidates = []
            return
        for rank, value in enumerate(sorted(self.children)):
            child = self.children[value]
            child.finish(service_id)
            self.heap.append((child.tasks, rank, child))
        heapq.heapify(self.heap)

    def take(self, flt: TaskFilter, place: Place) -> NodeInfo | None:
        if self.leaf is not None:
            info = self.leaf.take(flt, place)
        else:
            info = None
            heap = self.heap
            while heap:
                _, rank, child = heap[0]
                info = child.take(flt, place)
                if info is not None:
                    heapq.heapreplace(heap, (child.tasks, rank, child))
                    break
                heapq.heappop(heap)  # the whole branch is full for this group
        if info is not None:
            self.tasks += 1
        return info


class SpreadTree:
    """The decision structure for one task group: build it, then `take()` once per task."""

    def __init__(self, infos: Iterable[NodeInfo], flt: TaskFilter, descriptors: list[str]) -> None:
        self.flt = flt
        self.root = Branch()
        sid = flt.service_id
        for info in infos:
            count = info.by_service.get(sid, 0)
            branch = self.root
            branch.tasks += count
            for d in descriptors:
                value = spread_value(info.node, d)
                child = branch.children.get(value)
                if child is None:
                    child = branch.children[value] = Branch()
                child.tasks += count
                branch = child
            if flt.static_ok(info):
                branch.candidates.append(info)
        self.root.finish(sid)

    def take(self, place: Place) -> NodeInfo | None:
        """Pick the node for the next task and call `place(node)` (which must record the
        task on it, so the counts used for ranking move); None when every node is full."""
        return self.root.take(self.flt, place)


__all__ = ["Branch", "Leaf", "SpreadTree", "spread_descriptors", "spread_value"]
