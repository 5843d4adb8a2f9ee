"""Secrets and configs: named blobs a service's tasks get as files.

A secret's bytes live in the replicated store (so in the Raft log and snapshots, which are
encrypted at rest when the swarm is autolocked) but never leave it through the Docker API:
`data` is an internal field, left out of `to_api()`, and reaches a worker only inside the
assignment of a task that references it (manager/dispatcher/assignments.py). A config's data
is shown by `docker config inspect`, as Docker does. Both are immutable except for labels.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from .base import DockerModel, StoreObject


class Driver(DockerModel):
    name: str = ""
    options: dict[str, str] | None = None


class SecretSpec(DockerModel):
    name: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    driver: Driver | None = None
    templating: Driver | None = None


class Secret(StoreObject):
    kind = "secret"
    internal: ClassVar[frozenset[str]] = frozenset({"data"})

    spec: SecretSpec = Field(default_factory=SecretSpec)
    data: str = ""
    """The value, base64 as the API carries it; never shown (internal)."""

    def name_key(self) -> str | None:
        return self.spec.name or None


class ConfigSpec(DockerModel):
    name: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    data: str = ""
    """base64, shown by inspect as Docker does."""
    templating: Driver | None = None


class Config(StoreObject):
    kind = "config"

    spec: ConfigSpec = Field(default_factory=ConfigSpec)

    def name_key(self) -> str | None:
        return self.spec.name or None


class FileTarget(DockerModel):
    """Where a secret or config appears in the container, and as whom."""

    name: str = ""
    uid: str = Field(default="0", alias="UID")
    gid: str = Field(default="0", alias="GID")
    mode: int = 0o444


class SecretReference(DockerModel):
    file: FileTarget | None = None
    secret_id: str = ""
    secret_name: str = ""


class ConfigReference(DockerModel):
    file: FileTarget | None = None
    runtime: dict | None = None
    config_id: str = ""
    config_name: str = ""


def file_path(kind: str, target: str) -> str:
    """Where a reference's file appears: relative targets live under /run/secrets (secrets)
    or / (configs), as dockerd places them."""
    if target.startswith("/"):
        return target
    return f"/run/secrets/{target}" if kind == "secret" else f"/{target}"
