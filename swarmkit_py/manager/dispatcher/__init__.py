"""The dispatcher: worker sessions, heartbeats and node status, served by the Raft leader.

See dispatcher.py for the down-detection rules and protocol.py for the wire contract.
"""

from .directory import ClusterDirectory, ManagerDirectory, StaticDirectory, StoreDirectory
from .dispatcher import HEARTBEAT_FAILURE, Dispatcher
from .heartbeats import HeartbeatTracker
from .identity import Identify, cert_identity, params_identity
from .protocol import (
    HEARTBEAT,
    INVALID_ARGUMENT,
    NODE_NOT_FOUND,
    NOT_LEADER,
    PERMISSION_DENIED,
    SESSION,
    SESSION_INVALID,
    leader_hint,
    not_leader_message,
)
from .status import StatusChange, StatusWriter, apply_change

__all__ = [
    "HEARTBEAT",
    "HEARTBEAT_FAILURE",
    "INVALID_ARGUMENT",
    "NODE_NOT_FOUND",
    "NOT_LEADER",
    "PERMISSION_DENIED",
    "SESSION",
    "SESSION_INVALID",
    "ClusterDirectory",
    "Dispatcher",
    "HeartbeatTracker",
    "Identify",
    "ManagerDirectory",
    "StaticDirectory",
    "StatusChange",
    "StatusWriter",
    "StoreDirectory",
    "apply_change",
    "cert_identity",
    "leader_hint",
    "not_leader_message",
    "params_identity",
]
