"""Why a task could not be placed, worded exactly as Swarm words it.

`docker service ps` shows these strings in its ERROR column, and operators (and scripts)
grep for them, so the texts, the singular/plural forms and the ordering follow swarmkit's
filter `Explain` methods and `Pipeline.Explain`: each filter that rejected at least one node
contributes "<reason> on N node(s)", the reasons sorted by how many nodes they rejected
(most first; equal counts keep the filters' order), joined by "; ", wrapped in
"no suitable node (...)". With no reason at all (no nodes in the cluster) it is just
"no suitable node".
"""

from __future__ import annotations

from collections.abc import Mapping

READY = "ready"
RESOURCES = "resources"
CONSTRAINTS = "constraints"
PLATFORM = "platform"
MAX_REPLICAS = "max_replicas"
HOST_PORTS = "host_ports"

FILTER_ORDER = (READY, RESOURCES, CONSTRAINTS, PLATFORM, HOST_PORTS, MAX_REPLICAS)
"""Swarm's pipeline order (ready first; its plugin and volume filters have no counterpart
here). A node is counted against the first filter it fails."""


def _on(count: int, what: str) -> str:
    return f"{what} on 1 node" if count == 1 else f"{what} on {count} nodes"


def explain_filter(name: str, count: int) -> str:
    if name == READY:
        return (
            "1 node not available for new tasks"
            if count == 1
            else f"{count} nodes not available for new tasks"
        )
    if name == RESOURCES:
        return _on(count, "insufficient resources")
    if name == CONSTRAINTS:
        return _on(count, "scheduling constraints not satisfied")
    if name == HOST_PORTS:
        return _on(count, "host-mode port already in use")
    if name == PLATFORM:
        return _on(count, "unsupported platform")
    if name == MAX_REPLICAS:
        return "max replicas per node limit exceed"  # sic: Swarm's text has no count
    raise ValueError(f"unknown filter {name!r}")


def explain(failures: Mapping[str, int]) -> str:
    """The part inside the parentheses, from per-filter rejection counts."""
    ranked = sorted(
        (name for name in FILTER_ORDER if failures.get(name, 0) > 0),
        key=lambda name: -failures[name],  # sorted() is stable: ties keep FILTER_ORDER
    )
    return "; ".join(explain_filter(name, failures[name]) for name in ranked)


def no_suitable_node(failures: Mapping[str, int]) -> str:
    """The task's `status.err`: `no suitable node (insufficient resources on 2 nodes)`."""
    reason = explain(failures)
    return f"no suitable node ({reason})" if reason else "no suitable node"


__all__ = [
    "CONSTRAINTS",
    "FILTER_ORDER",
    "MAX_REPLICAS",
    "PLATFORM",
    "READY",
    "RESOURCES",
    "explain",
    "explain_filter",
    "no_suitable_node",
]
