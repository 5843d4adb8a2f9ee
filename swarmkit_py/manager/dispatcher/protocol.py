"""The dispatcher's wire contract: method names, error codes and the shapes they carry.

Workers never import the manager package (they meet it only over RPC), so
`swarmkit_py.worker.session` keeps its own copy of these strings; a unit test checks that both
copies agree. Everything here is plain data, msgpack friendly.

Requests (worker -> leader):

- ``dispatcher.session`` ``{"node_id"?: str, "addr"?: str, "description"?: {...}}`` ->
  ``{"session_id": str, "node_id": str, "heartbeat_period": float,
  "managers": [{"node_id": str, "addr": "host:port"}]}``.
  ``node_id`` is only read when the dispatcher trusts params for identity (tests without TLS);
  otherwise it must match the certificate or be absent. ``description`` is
  ``{"hostname", "platform": {"architecture", "os"}, "resources": {"nano_cpus",
  "memory_bytes"}, "engine": {"engine_version", "labels"}}`` (Docker spellings also accepted).
- ``dispatcher.heartbeat`` ``{"session_id": str}`` ->
  ``{"heartbeat_period": float, "managers": [...]}``.

Pushes (leader -> worker, notifications on the connection that opened the session) are sent by
``Dispatcher.push``; their method names belong to whoever pushes (assignments, issue 4).
"""

from __future__ import annotations

import re

SESSION = "dispatcher.session"
HEARTBEAT = "dispatcher.heartbeat"

# Error codes (RpcError.code). The worker reacts to the code, never to the message text,
# except for the leader address that NOT_LEADER carries (see not_leader_message).
NOT_LEADER = "not_leader"
"""This manager is not the Raft leader: reconnect to the address in the message."""
SESSION_INVALID = "session_invalid"
"""Unknown, replaced or expired session id: open a new session (same manager is fine)."""
NODE_NOT_FOUND = "node_not_found"
"""The caller's node is not in the cluster store (removed with ``docker node rm``)."""
PERMISSION_DENIED = "permission_denied"
"""The caller's certificate does not allow a session (or claims another node's id)."""
INVALID_ARGUMENT = "invalid_argument"
"""Malformed params (a description that does not validate, a missing session id)."""

_HINT = re.compile(r"\bleader_addr=(\S*)$")


def not_leader_message(leader_addr: str | None) -> str:
    """A message readable by people whose ``leader_addr=...`` tail a program can parse.

    The RPC layer carries only ``(code, message)``; ending the message with a fixed
    ``leader_addr=<host:port>`` field keeps the error typed by its code while still telling
    the worker where to go.
    """
    if leader_addr:
        return f"this manager is not the leader; the leader is {leader_addr}; leader_addr={leader_addr}"
    return "this manager is not the leader and knows no leader (election under way?); leader_addr="


def leader_hint(message: str) -> str | None:
    """The leader address carried by a NOT_LEADER message, or None if none is known."""
    m = _HINT.search(message)
    return m.group(1) or None if m else None
