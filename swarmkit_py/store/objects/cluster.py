"""The cluster object: one per swarm, holding cluster-wide settings, join tokens and CA."""

from __future__ import annotations

from pydantic import Field

from .base import DockerModel, StoreObject, Timestamp


class OrchestrationConfig(DockerModel):
    task_history_retention_limit: int | None = None


class RaftConfig(DockerModel):
    snapshot_interval: int | None = None
    keep_old_snapshots: int | None = None
    log_entries_for_slow_followers: int | None = None
    election_tick: int | None = None
    heartbeat_tick: int | None = None


class DispatcherConfig(DockerModel):
    heartbeat_period: int | None = None
    """Nanoseconds, like every Docker duration."""


class ExternalCA(DockerModel):
    protocol: str | None = None
    url: str | None = Field(default=None, alias="URL")
    options: dict[str, str] | None = None
    ca_cert: str | None = None


class CAConfig(DockerModel):
    """Docker 1.41's CAConfig. External CAs, a new signing CA and ForceRotate (root CA
    rotation) are known and refused by the control API: this CA does not rotate its root."""

    node_cert_expiry: int | None = None
    external_cas: list[ExternalCA] | None = Field(default=None, alias="ExternalCAs")
    signing_ca_cert: str | None = None
    signing_ca_key: str | None = None
    force_rotate: int | None = None


class EncryptionConfig(DockerModel):
    auto_lock_managers: bool | None = None


class TaskDefaultsLogDriver(DockerModel):
    name: str | None = None
    options: dict[str, str] | None = None


class TaskDefaults(DockerModel):
    log_driver: TaskDefaultsLogDriver | None = None


class ClusterSpec(DockerModel):
    name: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    orchestration: OrchestrationConfig | None = None
    raft: RaftConfig | None = None
    dispatcher: DispatcherConfig | None = None
    ca_config: CAConfig | None = None
    task_defaults: TaskDefaults | None = None
    encryption_config: EncryptionConfig | None = None


class JoinTokens(DockerModel):
    worker: str = ""
    manager: str = ""


class RootCA(DockerModel):
    """The cluster CA as replicated to every manager, so any of them can sign after a leader
    change. Internal: never served on the Docker API."""

    ca_cert: str | None = None
    ca_key: str | None = None
    ca_cert_hash: str | None = None


class BlacklistedCertificate(DockerModel):
    """A removed node's certificates (swarmkit's BlacklistedCertificate): refused on every
    port until `expiry`, after which they are worthless anyway and the entry can go."""

    expiry: Timestamp | None = None


class Cluster(StoreObject):
    kind = "cluster"
    internal = frozenset({"root_ca", "unlock_key", "blacklisted_certificates"})

    spec: ClusterSpec = Field(default_factory=ClusterSpec)
    root_rotation_in_progress: bool = False
    default_addr_pool: list[str] | None = None
    subnet_size: int | None = None
    data_path_port: int | None = None
    join_tokens: JoinTokens = Field(default_factory=JoinTokens)
    root_ca: RootCA | None = None
    unlock_key: str | None = None
    """The managers' autolock key (``SWMKEY-1-...``, swarmkit's UnlockKeys) while auto-lock is
    on. Replicated so every manager can wrap its Raft data keys with it; served only by
    GET /swarm/unlockkey. It sits in the Raft state, which that key itself seals on disk."""
    blacklisted_certificates: dict[str, BlacklistedCertificate] = Field(default_factory=dict)
    """Node id -> the removal of that node: every certificate issued to it is refused at once,
    not when it expires (issue 9, hole 5). Written with the node's deletion."""

    def name_key(self) -> str | None:
        return self.spec.name or None
