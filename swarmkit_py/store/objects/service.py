"""Services: the desired state the orchestrators converge tasks to."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from .base import DockerModel, StoreObject, Timestamp, Version, docker_alias
from .enums import FailureAction, UpdateOrder, UpdateState
from .network import VirtualIP
from .taskspec import TaskSpec


class ReplicatedService(DockerModel):
    replicas: int = Field(default=1, ge=0)

    @field_validator("replicas", mode="before")
    @classmethod
    def _nil_means_one(cls, value: Any) -> Any:
        # `docker service create` without --replicas sends {"Replicated": {}}; the CLI then
        # fails on a nil Replicas (notes pitfall 4), so absence means 1, as in dockerd.
        return 1 if value is None else value


class GlobalService(DockerModel):
    pass


class ReplicatedJob(DockerModel):
    """Run tasks to completion: `total_completions` successful exits, at most
    `max_concurrent` at a time. The control API fills dockerd's defaults when a client leaves
    them out (MaxConcurrent 1, TotalCompletions = MaxConcurrent), so the stored spec, and
    what the CLI's job progress reads back, always has both."""

    max_concurrent: int | None = None
    total_completions: int | None = None


class GlobalJob(DockerModel):
    """One task to completion on every eligible node (also on nodes that join later)."""


class ServiceMode(DockerModel):
    replicated: ReplicatedService | None = None
    global_: GlobalService | None = None
    replicated_job: ReplicatedJob | None = None
    global_job: GlobalJob | None = None

    @model_validator(mode="after")
    def _default_replicated(self) -> ServiceMode:
        # dockerd turns a spec with no mode into one replica; an unknown mode (kept as an
        # extra key until the control API refuses it) is not given one.
        if self.modes() == [] and not self.model_extra:
            self.replicated = ReplicatedService()
        return self

    def modes(self) -> list[str]:
        """The Docker names of the modes set (exactly one in a valid spec)."""
        return [docker_alias(name) for name in ("replicated", "global_", "replicated_job",
                                                "global_job") if getattr(self, name) is not None]

    @property
    def is_global(self) -> bool:
        return self.global_ is not None

    @property
    def is_job(self) -> bool:
        return self.replicated_job is not None or self.global_job is not None


class JobStatus(DockerModel):
    """A job's run: the iteration its current tasks belong to (each update of a job starts
    the next one: `docker service update --force` runs it again) and when it began."""

    job_iteration: Version = Field(default_factory=Version)
    last_execution: Timestamp | None = None


class UpdateConfig(DockerModel):
    """Also used for RollbackConfig, which has the same shape."""

    parallelism: int | None = None
    delay: int | None = None
    failure_action: FailureAction | None = None
    monitor: int | None = None
    max_failure_ratio: float | None = None
    order: UpdateOrder | None = None


class PortConfig(DockerModel):
    name: str | None = None
    protocol: str | None = None
    target_port: int | None = None
    published_port: int | None = None
    publish_mode: str | None = None


class EndpointSpec(DockerModel):
    mode: str | None = None
    ports: list[PortConfig] | None = None


class Endpoint(DockerModel):
    """Observed endpoint; its Ports feed the PORTS column of `docker service ls`."""

    spec: EndpointSpec | None = None
    ports: list[PortConfig] | None = None
    virtual_ips: list[VirtualIP] | None = None


class UpdateStatus(DockerModel):
    state: UpdateState | None = None
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    message: str | None = None


class ServiceSpec(DockerModel):
    name: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    task_template: TaskSpec = Field(default_factory=TaskSpec)
    mode: ServiceMode = Field(default_factory=ServiceMode)
    update_config: UpdateConfig | None = None
    rollback_config: UpdateConfig | None = None
    networks: list[dict] | None = None
    """Deprecated since API 1.25 (TaskTemplate.Networks replaced it): kept as the client
    wrote it, and copied into TaskTemplate.Networks, where it takes effect (servicespec.py)."""
    endpoint_spec: EndpointSpec | None = None


class Service(StoreObject):
    kind = "service"

    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    previous_spec: ServiceSpec | None = None
    endpoint: Endpoint | None = None
    update_status: UpdateStatus | None = None
    job_status: JobStatus | None = None
    """Set for job modes only (swarmkit's JobStatus; the CLI tells jobs by its presence)."""

    def name_key(self) -> str | None:
        return self.spec.name or None
