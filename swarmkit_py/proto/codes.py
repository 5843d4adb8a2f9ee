"""Error codes (``RpcError.code``) that cross between nodes.

A program reacts to the code, never to the message text (the one exception is the leader's
address that ``NOT_LEADER`` carries, see ``dispatcher.leader_hint``). The RPC layer's own codes
(``unavailable``, ``deadline_exceeded``...) are defined in ``rpc/errors.py`` and re-exported
here so that a handler finds every code in one place.
"""

from __future__ import annotations

from ..rpc.errors import DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE, UNKNOWN_METHOD

NOT_LEADER = "not_leader"
"""This manager is not the Raft leader: go to the leader named in the message."""
NO_QUORUM = "no_quorum"
"""The Raft group has no quorum: the write cannot be committed now; retry later."""
SESSION_INVALID = "session_invalid"
"""Unknown, replaced or expired dispatcher session: open a new one (same manager is fine)."""
NODE_NOT_FOUND = "node_not_found"
"""The caller's node is not in the cluster store (removed with ``docker node rm``)."""
NOT_FOUND = "not_found"
"""The object the call is about (the caller's node, for ``ca.renew``/``raft.join``) is gone."""
PERMISSION_DENIED = "permission_denied"
"""The caller's certificate does not allow this call (or claims another node's id)."""
UNAUTHENTICATED = "unauthenticated"
"""The call needs a client certificate and none (or an unverifiable one) was presented."""
INVALID_ARGUMENT = "invalid_argument"
"""Malformed params; retrying the same call cannot succeed."""
INVALID_JOIN_TOKEN = "invalid_join_token"
"""``ca.join`` with a token that is not one of the cluster's current tokens."""
FAILED_PRECONDITION = "failed_precondition"
"""The cluster is not in a state to do this (no cluster yet, a CA that cannot sign)."""

__all__ = [
    "DEADLINE_EXCEEDED",
    "FAILED_PRECONDITION",
    "INTERNAL",
    "INVALID_ARGUMENT",
    "INVALID_JOIN_TOKEN",
    "NODE_NOT_FOUND",
    "NOT_FOUND",
    "NOT_LEADER",
    "NO_QUORUM",
    "PERMISSION_DENIED",
    "SESSION_INVALID",
    "UNAUTHENTICATED",
    "UNAVAILABLE",
    "UNKNOWN_METHOD",
]
