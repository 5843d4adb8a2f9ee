"""Errors the control API raises for rule violations.

They are `StoreError`s with a gRPC code name, like the store's own verdicts, so the HTTP layer
has one mapping for both (`code` -> status) and Docker's "rpc error: code = X desc = ..."
messages come out the same whether a rule or the store refused the request.
"""

from __future__ import annotations

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
