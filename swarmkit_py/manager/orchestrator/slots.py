"""What occupies a slot: the shared vocabulary of the loops.

A replicated service has slots 1..N, a global service one "slot" per node. Each should hold
exactly one task the cluster is keeping:

- *runnable*: desired state `running` (or earlier) - it should be alive;
- *finished*: desired state `complete` - it stopped and its restart policy says leave it
  stopped (condition `none`, `on-failure` after a clean exit, or max attempts used up).

Both *hold* the slot, so the replicated orchestrator does not refill it. Swarm marks a
finished task desired `shutdown` instead, which makes its slot look empty: a later scale-up
or leader change then resurrects a task the policy said not to restart. `complete` is a
state Swarm itself uses as a desired state (for jobs), the dispatcher's rule "desired <=
running or not yet terminal" leaves such tasks off a worker's set, and it is > running, so it
still reads as "stop" to everything that compares.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from ...store import Node, NodeState, Service, Task, TaskState

FINISHED = TaskState.COMPLETE


def runnable(t: Task) -> bool:
    return t.desired_state <= TaskState.RUNNING


def holds(t: Task) -> bool:
    return t.desired_state <= FINISHED


def is_replicated(service: Service) -> bool:
    return service.spec.mode.replicated is not None and not service.spec.mode.is_global


def is_global(service: Service) -> bool:
    return service.spec.mode.is_global


def is_job(service: Service) -> bool:
    return service.spec.mode.is_job


def replicas(service: Service) -> int:
    r = service.spec.mode.replicated
    return r.replicas if r is not None else 0


def slot_key(t: Task):
    """The slot a task belongs to: its slot number, or its node for global tasks."""
    return t.slot if t.slot is not None else t.node_id


def by_slot(tasks: Iterable[Task]) -> dict:
    out: dict = defaultdict(list)
    for t in tasks:
        k = slot_key(t)
        if k is not None:
            out[k].append(t)
    return out


def node_down(node: Node | None) -> bool:
    return node is not None and node.status.state == NodeState.DOWN


def newest_first(tasks: Iterable[Task]) -> list[Task]:
    """By status timestamp, then creation, newest first (the reaper keeps the head)."""

    def key(t: Task):
        ts = t.status.timestamp or t.created_at
        return (ts.timestamp() if ts is not None else 0.0, t.version.index)

    return sorted(tasks, key=key, reverse=True)
