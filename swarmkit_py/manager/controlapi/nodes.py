"""Node rules that need no I/O: list filters, spec validation and the live manager status.

Filters follow dockerd's `GET /nodes` semantics (moby daemon/cluster/filters.go + swarmkit's
ListNodes): `id` and `name` are prefix matches (the CLI does exact matching itself), `role`
matches the node's actual role, `label` matches engine labels (`key` or `key=value`),
`node.label` matches the operator's node labels, and every key given must match (AND), any
value of a key may match (OR).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ...store import ManagerStatus, Node, NodeAvailability, NodeRole, NodeSpec, Reachability
from ..context import RaftMember
from .errors import InvalidArgument, describe_validation, json_type
from .filters import Filters, labels_match, parse_labels, validate_filters

NODE_FILTERS = frozenset({"id", "name", "label", "node.label", "role", "membership"})
MEMBERSHIPS = ("accepted", "pending")

def actual_role(node: Node) -> NodeRole:
    """swarmkit's `Node.Role` (set by the role manager); until then, the desired role."""
    return node.role if node.role is not None else node.spec.role


def node_filter(filters: Filters | None):
    """A predicate for `View.find(where=...)`, or None when nothing is filtered."""
    f = validate_filters(filters, NODE_FILTERS)
    if not f:
        return None
    roles = set()
    for r in f.get("role", []):
        try:
            roles.add(NodeRole(r))
        except ValueError:
            raise InvalidArgument(f"Invalid role filter: '{r}'", plain=True) from None
    memberships = set()
    for m in f.get("membership", []):
        if m.lower() not in MEMBERSHIPS:
            raise InvalidArgument(f"Invalid membership filter: '{m}'", plain=True)
        memberships.add(m.lower())
    ids = f.get("id", [])
    names = f.get("name", [])
    engine_labels = parse_labels(f.get("label", []))
    node_labels = parse_labels(f.get("node.label", []))

    def match(node: Node) -> bool:
        if ids and not any(node.id.startswith(p) for p in ids):
            return False
        if names:
            hostname = node.description.hostname if node.description else None
            if not hostname or not any(hostname.startswith(p) for p in names):
                return False
        if roles and actual_role(node) not in roles:
            return False
        # Every node in the store has been admitted: there is no pending acceptance here.
        if memberships and "accepted" not in memberships:
            return False
        if engine_labels:
            engine = node.description.engine if node.description else None
            if not labels_match(engine.labels if engine else None, engine_labels):
                return False
        if node_labels and not labels_match(node.spec.labels, node_labels):
            return False
        return True

    return match


def parse_node_spec(spec: Any) -> NodeSpec:
    """Validate a client's NodeSpec (any key case), with dockerd's messages for the two enums
    the CLI edits, and pydantic's precise location for everything else."""
    if isinstance(spec, NodeSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise InvalidArgument(
            f"invalid node spec: expected a JSON object, got {json_type(spec)}", plain=True
        )
    folded = {str(k).lower(): v for k, v in spec.items()}
    for key, enum in (("role", NodeRole), ("availability", NodeAvailability)):
        if key in folded:
            value = folded[key]
            if not isinstance(value, str) or value.lower() not in {e.value for e in enum}:
                raise InvalidArgument(f"invalid {key.capitalize()}: {value!r}", plain=True)
    # Go's decoder drops unknown fields; so do we, rather than store whatever a client sent.
    known = {k: v for k, v in spec.items() if str(k).lower() in NodeSpec._key_map}
    try:
        return NodeSpec.model_validate(known)
    except ValidationError as exc:
        raise InvalidArgument(
            f"invalid node spec: {describe_validation(exc)}", plain=True
        ) from None


def with_manager_status(node: Node, members: Sequence[RaftMember]) -> Node:
    """The node as the API shows it: `ManagerStatus` from the live Raft membership (as swarmkit
    does), absent for nodes that are not Raft members. A shallow copy, so the store's shared
    object is never touched."""
    member = None
    for m in members:
        if m.node_id == node.id:
            member = m
            break
    if member is None:
        if node.manager_status is None:
            return node
        return node.model_copy(update={"manager_status": None})
    status = ManagerStatus(
        leader=member.leader,
        reachability=Reachability.REACHABLE if member.reachable else Reachability.UNREACHABLE,
        addr=member.addr or None,
    )
    return node.model_copy(update={"manager_status": status})
