"""Which nodes a global service belongs on.

Constraint grammar and matching are the scheduler's (`manager/scheduler/constraints.py`), so
a global service and a replicated one with the same `--constraint` pick the same nodes.

Two questions, because creating and keeping differ (as in Swarm):
- `eligible`: may a *new* task go there? Ready, availability `active`, constraints match.
- `keeps`: may an *existing* task stay? Anything but `drain`, constraint mismatch, or a
  removed node. A node that is `pause`d, or `unknown`/`disconnected` (for instance right
  after a leader change, before its session re-opens), keeps its task: only the node-failure
  loop, on `down`, gives up on a node's tasks.
"""

from __future__ import annotations

from collections.abc import Iterator

from ...store import Node, NodeAvailability, NodeState, Service, View
from ..scheduler.constraints import ConstraintError, node_matches, parse_constraints

PLACE = "place"
RETIRE = "retire"


def constraints_of(service: Service):
    """Parsed constraints, or None when they cannot be parsed (the API refuses such specs;
    a stored one matches no node, as Swarm's would)."""
    placement = service.spec.task_template.placement
    try:
        return parse_constraints(placement.constraints if placement else None)
    except ConstraintError:
        return None


def matches(service: Service, node: Node, parsed=...) -> bool:
    cs = constraints_of(service) if parsed is ... else parsed
    return cs is not None and node_matches(cs, node)


def eligible(service: Service, node: Node, parsed=...) -> bool:
    return (
        node.status.state == NodeState.READY
        and node.spec.availability == NodeAvailability.ACTIVE
        and matches(service, node, parsed)
    )


def keeps(service: Service, node: Node | None, parsed=...) -> bool:
    return (
        node is not None
        and node.spec.availability != NodeAvailability.DRAIN
        and matches(service, node, parsed)
    )


def per_node(view: View, service: Service, held: dict[str, list]) -> Iterator[tuple[str, list, str]]:
    """For a per-node service (global, global job): (node ID, the tasks it holds there, what
    to do) for every node that needs something: PLACE a task where none is held and one may
    go, RETIRE the held ones where they may not stay. Down nodes are skipped (the node-failure
    loop's), and so are nodes not in the store (the caller's, from `held`)."""
    parsed = constraints_of(service)
    for node in view.nodes():
        if node.status.state == NodeState.DOWN:
            continue
        tasks = held.get(node.id, [])
        if keeps(service, node, parsed):
            if not tasks and eligible(service, node, parsed):
                yield node.id, tasks, PLACE
        elif tasks:
            yield node.id, tasks, RETIRE
