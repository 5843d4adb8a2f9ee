"""Placement constraints: parsing (`node.labels.zone == a`) and matching against a node.

Same grammar and matching rules as Swarm (manager/constraint), so a constraint that works with
`docker service create --constraint` works here and means the same thing:

- each expression is `key op value` with `op` one of `==`, `!=` (the first one found, `==`
  checked first); surrounding spaces are ignored;
- the key is `[A-Za-z_][A-Za-z0-9-_.]+`, the value is letters, digits, spaces and a few
  punctuation characters (never `=`, `!`, `<`, `>`, `~`: they are reserved for operators);
- values compare case-insensitively (Swarm uses `strings.EqualFold`); the key's prefix is
  case-insensitive but a label's own name is case-sensitive, as Docker labels are;
- a missing attribute or label compares as the empty string, so `!=` matches it and `==` does
  not.

One deliberate difference: Swarm accepts any well-formed key and then silently never matches
an unknown one (`node.label.zone==a`, a typo, leaves the service pending forever). Here
`parse_constraints` rejects keys it does not understand, so the API refuses the typo at
`service create` time, with the error text naming the key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ...store.objects import Node

EQ = "=="
NE = "!="
OPERATORS = (EQ, NE)

NODE_LABEL_PREFIX = "node.labels."
ENGINE_LABEL_PREFIX = "engine.labels."

_KEY_RE = re.compile(r"[a-z_][a-z0-9\-_.]+", re.IGNORECASE)
_VALUE_RE = re.compile(r"[a-z0-9:\-_\s.*()?+\[\]\\^$|/]+", re.IGNORECASE)

_PLAIN_KEYS = (
    "node.id",
    "node.hostname",
    "node.role",
    "node.platform.os",
    "node.platform.arch",
    "node.ip",
)


class ConstraintError(ValueError):
    """A constraint that cannot be parsed. The message is what the API returns (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Constraint:
    """One parsed expression. `attr` is the normalised attribute ("node.id", ...,
    "node.labels", "engine.labels"); `label` is the label name for the label kinds."""

    key: str
    op: str
    value: str
    attr: str
    label: str = ""

    def matches_value(self, actual: str | None) -> bool:
        """Case-insensitive equality (Swarm's EqualFold), negated for `!=`."""
        equal = (actual or "").casefold() == self.value.casefold()
        return equal if self.op == EQ else not equal

    def matches(self, node: Node) -> bool:
        return (
            self.matches_value(node_attribute(node, self))
            if self.attr != "node.ip"
            else _ip_matches(self, node)
        )

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def _attr_of(key: str) -> tuple[str, str] | None:
    lowered = key.lower()
    if lowered in _PLAIN_KEYS:
        return lowered, ""
    for prefix in (NODE_LABEL_PREFIX, ENGINE_LABEL_PREFIX):
        if len(key) > len(prefix) and lowered.startswith(prefix):
            return prefix[:-1], key[len(prefix) :]
    return None


def parse_constraint(expr: str) -> Constraint:
    for op in OPERATORS:
        if op not in expr:
            continue
        raw_key, raw_value = expr.split(op, 1)
        key, value = raw_key.strip(), raw_value.strip()
        if not _KEY_RE.fullmatch(key):
            raise ConstraintError(f"key '{key}' is invalid")
        if not _VALUE_RE.fullmatch(value):
            raise ConstraintError(f"value '{value}' is invalid")
        attr = _attr_of(key)
        if attr is None:
            raise ConstraintError(
                f"key '{key}' is invalid: expected node.id, node.hostname, node.role, "
                "node.platform.os, node.platform.arch, node.ip, node.labels.<name> "
                "or engine.labels.<name>"
            )
        if attr[0] == "node.ip":
            _parse_ip_value(value)
        return Constraint(key, op, value, attr[0], attr[1])
    raise ConstraintError(f"constraint expected one operator from {', '.join(OPERATORS)}")


def parse_constraints(exprs: Iterable[str] | None) -> tuple[Constraint, ...]:
    """Parse a service's `Placement.Constraints`; raises `ConstraintError` on the first bad one."""
    return tuple(parse_constraint(e) for e in exprs or ())


def validate_constraints(exprs: list[str] | None) -> None:
    """What the service API calls before accepting a spec: raises `ConstraintError` with a
    message fit for the client (`key 'node.labels.' is invalid`, ...)."""
    parse_constraints(exprs)


def node_attribute(node: Node, c: Constraint) -> str | None:
    """The node's value for a constraint's attribute (None when the node does not have it)."""
    attr = c.attr
    desc = node.description
    if attr == "node.id":
        return node.id
    if attr == "node.hostname":
        return desc.hostname if desc is not None else None
    if attr == "node.role":
        # The actual role (Swarm's Node.Role), falling back to the desired one before the
        # role manager has written it.
        role = node.role if node.role is not None else node.spec.role
        return str(role.value) if role is not None else None
    if attr == "node.platform.os":
        return desc.platform.os if desc is not None and desc.platform is not None else None
    if attr == "node.platform.arch":
        if desc is None or desc.platform is None:
            return None
        return desc.platform.architecture
    if attr == "node.labels":
        return node.spec.labels.get(c.label)
    if attr == "engine.labels":
        if desc is None or desc.engine is None or not desc.engine.labels:
            return None
        return desc.engine.labels.get(c.label)
    return None


def _parse_ip_value(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConstraintError(
            f"value '{value}' is invalid: node.ip needs an address or a CIDR network"
        ) from None


def _ip_matches(c: Constraint, node: Node) -> bool:
    """`node.ip == 10.0.0.5` or `node.ip != 10.0.0.0/8`, against the node's reported address."""
    addr = node.status.addr or ""
    host = addr.rsplit(":", 1)[0] if addr.count(":") == 1 else addr  # drop a ":port"
    try:
        within = ipaddress.ip_address(host.strip("[]")) in _parse_ip_value(c.value)
    except ValueError:
        within = False  # no parseable address: like Swarm, `==` fails and `!=` holds
    return within if c.op == EQ else not within


def node_matches(constraints: Iterable[Constraint], node: Node) -> bool:
    """True if the node satisfies every constraint."""
    return all(c.matches(node) for c in constraints)


__all__ = [
    "ENGINE_LABEL_PREFIX",
    "NODE_LABEL_PREFIX",
    "Constraint",
    "ConstraintError",
    "node_attribute",
    "node_matches",
    "parse_constraint",
    "parse_constraints",
    "validate_constraints",
]
