"""A Prometheus-style histogram (cumulative buckets), cheap enough to observe every write.

Shared by Raft's proposal latency and the agent's event-loop holds; `/metrics` renders any
object with `cumulative()`, `count` and `sum`.
"""

from __future__ import annotations


class Histogram:
    BOUNDS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

    def __init__(self, bounds: tuple[float, ...] | None = None) -> None:
        if bounds is not None:
            self.BOUNDS = bounds
        self.counts = [0] * len(self.BOUNDS)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float, n: int = 1) -> None:
        """Record `n` observations of `seconds` (a batch of writes that completed together)."""
        self.count += n
        self.sum += seconds * n
        for i, b in enumerate(self.BOUNDS):
            if seconds <= b:
                self.counts[i] += n
                break

    def cumulative(self) -> list[tuple[float, int]]:
        out, acc = [], 0
        for b, c in zip(self.BOUNDS, self.counts, strict=True):
            acc += c
            out.append((b, acc))
        return out
