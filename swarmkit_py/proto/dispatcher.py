"""The dispatcher's contract: worker sessions, heartbeats, task assignments and status reports.

Served by ``manager/dispatcher`` on the Raft leader, used by ``worker/session.py`` and
``worker/reconcile``. Everything is plain msgpack data.

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
- ``dispatcher.task_status`` ``{"session_id": str, "updates": [update, ...]}`` ->
  ``{"written": int, "skipped": [{"task_id": str, "reason": str}]}``; see ``status_update``.

Pushes (leader -> worker, notifications on the connection that opened the session):

- ``dispatcher.assignments`` ``{"seq": int, "tasks": [task, ...]}``: the node's full set; see
  ``AssignedTask``.
- ``dispatcher.managers`` ``{"managers": [{"node_id", "addr"}]}``: the manager list changed.

Error codes: ``codes.NOT_LEADER`` (with ``not_leader_message``), ``SESSION_INVALID``,
``NODE_NOT_FOUND``, ``PERMISSION_DENIED``, ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import re

SESSION = "dispatcher.session"
HEARTBEAT = "dispatcher.heartbeat"
TASK_STATUS = "dispatcher.task_status"
ASSIGNMENTS = "dispatcher.assignments"
MANAGERS_PUSH = "dispatcher.managers"
NETMAP = "dispatcher.netmap"
"""Leader -> every worker: the cluster's network map (manager/dispatcher/netmap.py)."""

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
    return (m.group(1) or None) if m else None
