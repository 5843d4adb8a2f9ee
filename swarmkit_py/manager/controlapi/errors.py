"""Errors the control API raises for rule violations.

They are `StoreError`s with a gRPC code name, like the store's own verdicts, so the HTTP layer
has one mapping for both (`code` -> status) and Docker's "rpc error: code = X desc = ..."
messages come out the same whether a rule or the store refused the request.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ...store import StoreError


class InvalidArgument(StoreError):
    """The request itself is malformed (bad spec, bad filter): fix the input.

    `plain` marks errors that dockerd reports itself while decoding a request (no
    "rpc error: ..." prefix), as opposed to swarmkit's own validation verdicts."""

    code = "InvalidArgument"

    def __init__(self, message: str, *, plain: bool = False, **kw) -> None:
        super().__init__(message, **kw)
        self.plain = plain


class FailedPrecondition(StoreError):
    """The request is well formed but the cluster's state forbids it right now (last manager,
    quorum, node still up)."""

    code = "FailedPrecondition"


class Internal(StoreError):
    """The stored state is not what it must be (e.g. the cluster object lacks its CA)."""

    code = "Internal"


class NotInSwarm(StoreError):
    """There is no cluster object yet: this manager has nothing to answer with."""

    code = "Unavailable"
    plain = True

    def __init__(self) -> None:
        super().__init__(
            'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
            "to connect this node to swarm and try again."
        )


def describe_validation(exc: ValidationError) -> str:
    """pydantic's errors as one line: `Labels.a: Input should be a valid string; ...`."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(body)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def json_type(value: Any) -> str:
    """JSON's name for the type of a decoded value, for "expected an object, got ..." errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__
