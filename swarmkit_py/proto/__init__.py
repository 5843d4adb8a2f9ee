"""The node-to-node vocabulary: RPC method names, error codes and the messages they carry.

Managers and workers meet only over RPC (DESIGN.md: ``worker`` never imports ``manager``), so
the contract between them has to live below both. It used to be copied into each side, with
unit tests whose only job was to keep the copies equal; now both sides import it from here,
as moby/swarmkit's ``api`` package is shared by its manager and agent.

Where it sits: above ``rpc`` (framing, the ``(code, message)`` error pair) and ``store`` (the
object model: a task's spec and status travel in Docker's spelling, as the store keeps them),
below ``manager``, ``worker`` and ``agent``. It does no I/O and holds no state.

- ``codes``      every ``RpcError.code`` a node may answer another with, and what to do about it
- ``dispatcher`` worker sessions, heartbeats, task assignments and task status reports
- ``ca``         join, root CA and certificate renewal on the cluster port
- ``membership`` managers entering the Raft group
- ``logs``       `docker service logs` streamed from the nodes through their sessions

Raft's own messages (``raft.msg``) are named in ``raft/transport.py``: they are sent and
received by that one module, and ``raft`` sits below ``store``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .ca import CA_JOIN, CA_RENEW, CA_RENEW_NOW, CA_ROOT
from .codes import (
    DEADLINE_EXCEEDED,
    FAILED_PRECONDITION,
    INTERNAL,
    INVALID_ARGUMENT,
    INVALID_JOIN_TOKEN,
    NO_QUORUM,
    NODE_NOT_FOUND,
    NOT_FOUND,
    NOT_LEADER,
    PERMISSION_DENIED,
    SESSION_INVALID,
    UNAUTHENTICATED,
    UNAVAILABLE,
    UNKNOWN_METHOD,
)
from .logs import (
    LEASE,
    LOGS_CANCEL,
    LOGS_CLOSE,
    LOGS_NEXT,
    LOGS_OPEN,
    LOGS_PUBLISH,
    LOGS_SUBSCRIBE,
    MAX_BATCH,
)
from .membership import RAFT_JOIN, RAFT_MEMBERS, RAFT_TRANSFER

if TYPE_CHECKING:
    from .dispatcher import (
        ASSIGNMENTS,
        ASSIGNMENTS_RESYNC,
        FEATURE_INCREMENTAL,
        HEARTBEAT,
        LEADER_PUSH,
        MANAGERS_PUSH,
        NETMAP,
        PROBE,
        SESSION,
        TASK_STATUS,
        WATCH,
        AssignedTask,
        NetAttachment,
        TaskFile,
        leader_hint,
        not_leader_message,
        parse_status_update,
        state_or_new,
        status_update,
    )


def __getattr__(name: str):
    """``dispatcher``'s names load at first use: it reads a task's spec and status with the
    store's models, which a process that only joins (``swarmkit-py join``: the CA's methods)
    has no use for. Every name of ``__all__`` not imported above is one of ``dispatcher``'s."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.dispatcher"), name)
    globals()[name] = value
    return value


__all__ = [
    "LEASE",
    "LOGS_CANCEL",
    "LOGS_CLOSE",
    "LOGS_NEXT",
    "LOGS_OPEN",
    "LOGS_PUBLISH",
    "LOGS_SUBSCRIBE",
    "MAX_BATCH",
    "ASSIGNMENTS",
    "ASSIGNMENTS_RESYNC",
    "FEATURE_INCREMENTAL",
    "AssignedTask",
    "CA_JOIN",
    "CA_RENEW",
    "CA_RENEW_NOW",
    "CA_ROOT",
    "DEADLINE_EXCEEDED",
    "FAILED_PRECONDITION",
    "HEARTBEAT",
    "INTERNAL",
    "INVALID_ARGUMENT",
    "INVALID_JOIN_TOKEN",
    "LEADER_PUSH",
    "MANAGERS_PUSH",
    "PROBE",
    "NETMAP",
    "NetAttachment",
    "TaskFile",
    "NODE_NOT_FOUND",
    "NOT_FOUND",
    "NOT_LEADER",
    "NO_QUORUM",
    "PERMISSION_DENIED",
    "RAFT_JOIN",
    "RAFT_MEMBERS",
    "RAFT_TRANSFER",
    "SESSION",
    "SESSION_INVALID",
    "TASK_STATUS",
    "UNAUTHENTICATED",
    "UNAVAILABLE",
    "UNKNOWN_METHOD",
    "WATCH",
    "leader_hint",
    "not_leader_message",
    "parse_status_update",
    "state_or_new",
    "status_update",
]
