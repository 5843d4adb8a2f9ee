"""Per-node heartbeat deadlines, as a pure structure driven by an explicit ``now``.

Kept free of asyncio and clocks so the down-detection rules (and the leader-change grace) can
be tested without sleeping. The dispatcher feeds it the time from its injected clock.
"""

from __future__ import annotations

import heapq


class HeartbeatTracker:
    """node_id -> deadline; a node whose deadline passes is "expired" exactly once.

    Deadlines live in a dict (the truth) and a heap of (deadline, node_id) entries that may be
    stale: a heartbeat pushes a new entry instead of searching the heap, and stale entries are
    dropped when they surface. That keeps a heartbeat O(log n) and a sweep proportional to the
    nodes that actually expire, which matters at a thousand nodes beating once a second.
    """

    def __init__(self) -> None:
        self._deadlines: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._deadlines

    def deadline(self, node_id: str) -> float | None:
        return self._deadlines.get(node_id)

    def set(self, node_id: str, deadline: float) -> None:
        """Arm (or re-arm) the node's timer; the latest call wins, earlier or later."""
        self._deadlines[node_id] = deadline
        heapq.heappush(self._heap, (deadline, node_id))
        if len(self._heap) > 4 * len(self._deadlines) + 64:
            self._compact()

    def postpone(self, delta: float) -> None:
        """Move every deadline ``delta`` later (the judge itself was not running meanwhile)."""
        self._deadlines = {n: d + delta for n, d in self._deadlines.items()}
        self._compact()

    def discard(self, node_id: str) -> None:
        self._deadlines.pop(node_id, None)

    def clear(self) -> None:
        self._deadlines.clear()
        self._heap.clear()

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is tracked."""
        heap = self._heap
        while heap and self._deadlines.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def count_before(self, t: float, exclude: set[str] | frozenset[str] = frozenset()) -> int:
        """How many tracked nodes have a deadline before ``t`` (not counting ``exclude``); a
        scan of every node, for the rare moments a deadline expires."""
        return sum(1 for n, d in self._deadlines.items() if d < t and n not in exclude)

    def pop_expired(self, now: float) -> list[str]:
        """Nodes whose deadline is <= now, removed from tracking (so reported once)."""
        out: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, node_id = heapq.heappop(heap)
            if self._deadlines.get(node_id) == deadline:
                del self._deadlines[node_id]
                out.append(node_id)
        return out

    def _compact(self) -> None:
        self._heap = [(d, n) for n, d in self._deadlines.items()]
        heapq.heapify(self._heap)
