"""The control API: Swarm's rules for reading and changing nodes and the cluster.

The HTTP layer (`swarmkit_py.api`) translates Docker Engine API requests into calls on
`ControlAPI` and its errors (typed `StoreError`s with gRPC code names) into Docker's statuses.
"""

from .control import (
    LAST_MANAGER_MESSAGE,
    NO_LEADER_MESSAGE,
    QUORUM_LOSS_MESSAGE,
    ControlAPI,
    cluster_json,
)
from .errors import FailedPrecondition, Internal, InvalidArgument, NotInSwarm
from .nodes import NODE_FILTERS
from .quorum import can_remove_member, member_for

__all__ = [
    "LAST_MANAGER_MESSAGE",
    "NODE_FILTERS",
    "NO_LEADER_MESSAGE",
    "QUORUM_LOSS_MESSAGE",
    "ControlAPI",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotInSwarm",
    "can_remove_member",
    "cluster_json",
    "member_for",
]
