"""Every model class of the object model, and KINDS: what `store.objects` loads on first use
of a name that is not an enum (see the package's docstring)."""

# ruff: noqa: F401 - every name here is re-exported by the package (its __all__)
from __future__ import annotations

from .base import DockerModel, StoreObject, Timestamp, Version, docker_alias
from .cluster import (
    BlacklistedCertificate,
    CAConfig,
    Cluster,
    ClusterSpec,
    DispatcherConfig,
    EncryptionConfig,
    JoinTokens,
    OrchestrationConfig,
    RaftConfig,
    RootCA,
)
from .network import IPAMConfig, Network, NetworkAttachment, NetworkSpec, VirtualIP
from .node import (
    EngineDescription,
    ManagerStatus,
    Node,
    NodeCertificate,
    NodeDescription,
    NodeResources,
    NodeSpec,
    NodeStatus,
    Platform,
)
from .secret import (
    Config,
    ConfigReference,
    ConfigSpec,
    FileTarget,
    Secret,
    SecretReference,
    SecretSpec,
)
from .service import (
    Endpoint,
    EndpointSpec,
    GlobalJob,
    GlobalService,
    JobStatus,
    PortConfig,
    ReplicatedJob,
    ReplicatedService,
    Service,
    ServiceMode,
    ServiceSpec,
    UpdateConfig,
    UpdateStatus,
)
from .task import ContainerStatus, Task, TaskStatus
from .taskspec import (
    ContainerSpec,
    HealthConfig,
    Mount,
    Placement,
    PlacementPreference,
    ResourceLimits,
    ResourceRequirements,
    ResourceReservations,
    RestartPolicy,
    SpreadOver,
    TaskSpec,
)

KINDS: dict[str, type[StoreObject]] = {
    "cluster": Cluster,
    "node": Node,
    "service": Service,
    "task": Task,
    "network": Network,
    "secret": Secret,
    "config": Config,
}
"""Kind name -> model class; the kind names are what transactions and events carry."""
