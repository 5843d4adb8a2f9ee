"""The object model: Cluster, Node, Service, Task and their specs, shaped like Docker's API.

The enums load with the package; the model classes and KINDS (``models``) at the first use of
any of them, so a process that needs only the wire's vocabulary does not build them.
"""

from __future__ import annotations

import importlib

from .enums import (
    FailureAction,
    NodeAvailability,
    NodeRole,
    NodeState,
    Reachability,
    RestartCondition,
    TaskState,
    UpdateOrder,
    UpdateState,
)


def __getattr__(name: str):
    """The model classes (pydantic: ~0.1 s of CPU to build) load at the first use of one of
    them, not with the enums: a process that only speaks the wire's vocabulary (`swarmkit-py
    join`, a worker's CA client) never builds them."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    models = importlib.import_module(f"{__name__}.models")
    globals().update({n: getattr(models, n) for n in __all__ if n not in globals()})
    return globals()[name]


__all__ = [
    "KINDS",
    "CAConfig",
    "BlacklistedCertificate",
    "Config",
    "ConfigReference",
    "ConfigSpec",
    "FileTarget",
    "Secret",
    "SecretReference",
    "SecretSpec",
    "Cluster",
    "ClusterSpec",
    "ContainerSpec",
    "ContainerStatus",
    "DispatcherConfig",
    "DockerModel",
    "EncryptionConfig",
    "Endpoint",
    "EndpointSpec",
    "EngineDescription",
    "FailureAction",
    "GlobalJob",
    "GlobalService",
    "JobStatus",
    "Mount",
    "HealthConfig",
    "IPAMConfig",
    "JoinTokens",
    "ManagerStatus",
    "Network",
    "NetworkAttachment",
    "NetworkSpec",
    "Node",
    "NodeAvailability",
    "NodeCertificate",
    "NodeDescription",
    "NodeResources",
    "NodeRole",
    "NodeSpec",
    "NodeState",
    "NodeStatus",
    "OrchestrationConfig",
    "Placement",
    "PlacementPreference",
    "Platform",
    "PortConfig",
    "RaftConfig",
    "Reachability",
    "ReplicatedJob",
    "ReplicatedService",
    "ResourceLimits",
    "ResourceRequirements",
    "ResourceReservations",
    "RestartCondition",
    "RestartPolicy",
    "RootCA",
    "Service",
    "ServiceMode",
    "ServiceSpec",
    "SpreadOver",
    "StoreObject",
    "Task",
    "TaskSpec",
    "TaskState",
    "TaskStatus",
    "Timestamp",
    "UpdateConfig",
    "UpdateOrder",
    "UpdateState",
    "UpdateStatus",
    "Version",
    "VirtualIP",
    "docker_alias",
]
