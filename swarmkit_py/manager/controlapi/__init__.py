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
from .networks import NETWORK_FILTERS, network_json
from .nodes import NODE_FILTERS
from .quorum import can_remove_member, member_for
from .secrets import file_path, object_json
from .services import SERVICE_FILTERS, service_json
from .tasks import TASK_FILTERS, task_json

__all__ = [
    "LAST_MANAGER_MESSAGE",
    "NETWORK_FILTERS",
    "NODE_FILTERS",
    "NO_LEADER_MESSAGE",
    "QUORUM_LOSS_MESSAGE",
    "SERVICE_FILTERS",
    "TASK_FILTERS",
    "ControlAPI",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotInSwarm",
    "can_remove_member",
    "cluster_json",
    "file_path",
    "object_json",
    "member_for",
    "network_json",
    "service_json",
    "task_json",
]
