"""Nodes: one per agent, manager or worker."""

from __future__ import annotations

from pydantic import Field

from .base import DockerModel, StoreObject
from .enums import NodeAvailability, NodeRole, NodeState, Reachability


class NodeSpec(DockerModel):
    """What the operator asks for. `role` is the desired role; the role manager moves the
    node's actual `Node.role` towards it (promote/demote)."""

    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    role: NodeRole = NodeRole.WORKER
    availability: NodeAvailability = NodeAvailability.ACTIVE


class Platform(DockerModel):
    architecture: str | None = None
    os: str | None = None


class NodeResources(DockerModel):
    nano_cpus: int | None = None
    memory_bytes: int | None = None


class EngineDescription(DockerModel):
    engine_version: str | None = None
    labels: dict[str, str] | None = None


class NodeDescription(DockerModel):
    """Reported by the worker; `engine.labels` feed `engine.labels.*` constraints."""

    hostname: str | None = None
    platform: Platform | None = None
    resources: NodeResources | None = None
    engine: EngineDescription | None = None


class NodeStatus(DockerModel):
    state: NodeState = NodeState.UNKNOWN
    message: str | None = None
    addr: str | None = None


class ManagerStatus(DockerModel):
    leader: bool = False
    reachability: Reachability = Reachability.UNKNOWN
    addr: str | None = None


class NodeCertificate(DockerModel):
    """The node's issued certificate (PEM) and the CN it carries, kept so that any manager
    can answer a renewal and so that a role change can be seen to have been re-issued."""

    role: NodeRole | None = None
    csr: str | None = None
    status: str | None = None
    certificate: str | None = None
    cn: str | None = None


class Node(StoreObject):
    kind = "node"
    internal = frozenset({"role", "certificate", "raft_id"})

    spec: NodeSpec = Field(default_factory=NodeSpec)
    description: NodeDescription | None = None
    status: NodeStatus = Field(default_factory=NodeStatus)
    manager_status: ManagerStatus | None = None
    role: NodeRole | None = None
    """Actual role (swarmkit's Node.Role), as opposed to the desired `spec.role`."""
    certificate: NodeCertificate | None = None
    raft_id: int | None = None
    """The node's Raft member id while it is a manager (Raft ids are integers; node ids are
    Swarm's 25-character strings)."""

    def name_key(self) -> str | None:
        # Docker resolves `docker node inspect <name>` by hostname; the spec name is only
        # a fallback for nodes that have not reported a description yet.
        if self.description is not None and self.description.hostname:
            return self.description.hostname
        return self.spec.name or None
