"""What a task runs: the TaskTemplate of a service, copied into each task it spawns.

Durations are integers of nanoseconds, as Go's `time.Duration` marshals them. Every field is
optional with no invented defaults: what a client sent is what `inspect` shows back, and the
API layer fills defaults only when asked (`insertDefaults=true`).

The models cover every field Docker API 1.41 defines for a swarm service's TaskTemplate, so a
key that is not modelled here is one Docker 1.41 does not know either: the control API drops
it with a warning (controlapi/servicespec.py, `drop_unknown`), and refuses with a 400 the
known fields a Linux worker cannot honour (Windows-only isolation and credential specs,
plugins, generic resources, named pipes).
"""

from __future__ import annotations

from pydantic import Field

from .base import DockerModel
from .enums import RestartCondition
from .node import Platform
from .secret import ConfigReference, SecretReference

SECOND = 1_000_000_000
"""One second in the unit of every duration here (and on the wire, and to the engine)."""
DEFAULT_STOP_GRACE_PERIOD = 10 * SECOND
"""Swarm's stop grace period when the spec names none: shown by the API with
``insertDefaults``, applied by the executor."""


class HealthConfig(DockerModel):
    test: list[str] | None = None
    interval: int | None = None
    timeout: int | None = None
    retries: int | None = None
    start_period: int | None = None


class CredentialSpec(DockerModel):
    """Windows gMSA credentials: known, refused (no Windows workers)."""

    config: str | None = None
    file: str | None = None
    registry: str | None = None


class SELinuxContext(DockerModel):
    disable: bool | None = None
    user: str | None = None
    role: str | None = None
    type: str | None = None
    level: str | None = None


class Privileges(DockerModel):
    credential_spec: CredentialSpec | None = None
    selinux_context: SELinuxContext | None = Field(default=None, alias="SELinuxContext")


class BindOptions(DockerModel):
    propagation: str | None = None
    non_recursive: bool | None = None


class MountDriver(DockerModel):
    name: str | None = None
    options: dict[str, str] | None = None


class VolumeOptions(DockerModel):
    no_copy: bool | None = None
    labels: dict[str, str] | None = None
    driver_config: MountDriver | None = None


class TmpfsOptions(DockerModel):
    size_bytes: int | None = None
    mode: int | None = None


class Mount(DockerModel):
    """The engine's own mount shape (HostConfig.Mounts), passed to it as is."""

    target: str | None = None
    source: str | None = None
    type: str | None = None
    read_only: bool | None = None
    consistency: str | None = None
    bind_options: BindOptions | None = None
    volume_options: VolumeOptions | None = None
    tmpfs_options: TmpfsOptions | None = None


class DNSConfig(DockerModel):
    nameservers: list[str] | None = None
    search: list[str] | None = None
    options: list[str] | None = None


class Ulimit(DockerModel):
    name: str = ""
    soft: int = 0
    hard: int = 0


class ContainerSpec(DockerModel):
    image: str = ""
    labels: dict[str, str] | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    hostname: str | None = None
    env: list[str] | None = None
    dir: str | None = None
    user: str | None = None
    groups: list[str] | None = None
    privileges: Privileges | None = None
    init: bool | None = None
    stop_signal: str | None = None
    tty: bool | None = Field(default=None, alias="TTY")
    open_stdin: bool | None = None
    read_only: bool | None = None
    mounts: list[Mount] | None = None
    stop_grace_period: int | None = None
    healthcheck: HealthConfig | None = None
    hosts: list[str] | None = None
    dns_config: DNSConfig | None = None
    secrets: list[SecretReference] | None = None
    configs: list[ConfigReference] | None = None
    isolation: str | None = None
    sysctls: dict[str, str] | None = None
    capability_add: list[str] | None = None
    capability_drop: list[str] | None = None
    ulimits: list[Ulimit] | None = None


class ResourceLimits(DockerModel):
    nano_cpus: int | None = None
    memory_bytes: int | None = None
    pids: int | None = None


class NamedGenericResource(DockerModel):
    kind: str | None = None
    value: str | None = None


class DiscreteGenericResource(DockerModel):
    kind: str | None = None
    value: int | None = None


class GenericResource(DockerModel):
    named_resource_spec: NamedGenericResource | None = None
    discrete_resource_spec: DiscreteGenericResource | None = None


class ResourceReservations(DockerModel):
    nano_cpus: int | None = None
    memory_bytes: int | None = None
    generic_resources: list[GenericResource] | None = None


class ResourceRequirements(DockerModel):
    limits: ResourceLimits | None = None
    reservations: ResourceReservations | None = None


class RestartPolicy(DockerModel):
    condition: RestartCondition | None = None
    delay: int | None = None
    max_attempts: int | None = None
    window: int | None = None


class SpreadOver(DockerModel):
    spread_descriptor: str = ""


class PlacementPreference(DockerModel):
    spread: SpreadOver | None = None


class Placement(DockerModel):
    constraints: list[str] | None = None
    preferences: list[PlacementPreference] | None = None
    max_replicas: int | None = None
    platforms: list[Platform] | None = None


class LogDriver(DockerModel):
    name: str | None = None
    options: dict[str, str] | None = None


class PluginPrivilege(DockerModel):
    name: str | None = None
    description: str | None = None
    value: list[str] | None = None


class PluginSpec(DockerModel):
    """Known, refused: there are no managed plugins here."""

    name: str | None = None
    remote: str | None = None
    disabled: bool | None = None
    plugin_privilege: list[PluginPrivilege] | None = None


class NetworkAttachmentSpec(DockerModel):
    """Known, refused: dockerd makes these itself for `docker run --network <overlay>`."""

    container_id: str | None = None


NETWORK_ATTACHMENT_KEYS = ("Target", "Aliases", "DriverOpts")
"""Docker 1.41's NetworkAttachmentConfig. Entries stay plain dicts (the allocator, dispatcher
and network map read them by these keys); the control API folds and checks them."""


class TaskSpec(DockerModel):
    plugin_spec: PluginSpec | None = None
    container_spec: ContainerSpec | None = None
    network_attachment_spec: NetworkAttachmentSpec | None = None
    resources: ResourceRequirements | None = None
    restart_policy: RestartPolicy | None = None
    placement: Placement | None = None
    force_update: int = 0
    """Always shown, as dockerd does (Go has no omitempty on it): clients read it back to
    bump it (`service update --force`)."""
    runtime: str | None = None
    networks: list[dict] | None = Field(default=None)
    log_driver: LogDriver | None = None
