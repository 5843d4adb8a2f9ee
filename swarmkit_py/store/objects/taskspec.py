"""What a task runs: the TaskTemplate of a service, copied into each task it spawns.

Durations are integers of nanoseconds, as Go's `time.Duration` marshals them. Every field is
optional with no invented defaults: what a client sent is what `inspect` shows back, and the
API layer fills defaults only when asked (`insertDefaults=true`).
"""

from __future__ import annotations

from pydantic import Field

from .base import DockerModel
from .enums import RestartCondition
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
    init: bool | None = None
    stop_signal: str | None = None
    stop_grace_period: int | None = None
    healthcheck: HealthConfig | None = None
    secrets: list[SecretReference] | None = None
    configs: list[ConfigReference] | None = None


class ResourceLimits(DockerModel):
    nano_cpus: int | None = None
    memory_bytes: int | None = None
    pids: int | None = None


class ResourceReservations(DockerModel):
    nano_cpus: int | None = None
    memory_bytes: int | None = None


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


class TaskSpec(DockerModel):
    container_spec: ContainerSpec | None = None
    resources: ResourceRequirements | None = None
    restart_policy: RestartPolicy | None = None
    placement: Placement | None = None
    force_update: int | None = None
    runtime: str | None = None
    networks: list[dict] | None = Field(default=None)
