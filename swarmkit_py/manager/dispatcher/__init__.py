"""The dispatcher: worker sessions, heartbeats and node status, served by the Raft leader.

See dispatcher.py for the down-detection rules; the wire contract is ``swarmkit_py/proto/dispatcher.py``.
"""

from .directory import ClusterDirectory, ManagerDirectory, StaticDirectory, StoreDirectory
from .dispatcher import DEFAULT_MAX_HEARTBEAT_RATE, HEARTBEAT_FAILURE, Dispatcher
from .heartbeats import HeartbeatTracker
from .identity import Identify, cert_identity, params_identity
from .status import StatusChange, StatusWriter, apply_change

__all__ = [
    "DEFAULT_MAX_HEARTBEAT_RATE",
    "HEARTBEAT_FAILURE",
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
    "params_identity",
]
