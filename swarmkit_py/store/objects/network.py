"""Networks: overlay networks (and the cluster's `ingress`), with what the leader allocated.

The spec is what the operator asked for (`docker network create -d overlay --subnet ...`); the
rest is the allocator's: the subnet and gateway actually used, the VXLAN id, and one address
per node (the node's own endpoint on the network: the source address its routing mesh and
virtual IPs masquerade to, so replies come back through the node that balanced the request).
All of it is replicated through Raft, so a new leader allocates without ever overlapping.
"""

from __future__ import annotations

from pydantic import Field

from .base import DockerModel, StoreObject


class IPAMConfig(DockerModel):
    subnet: str | None = None
    gateway: str | None = None


class NetworkSpec(DockerModel):
    name: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    driver: str = "overlay"
    options: dict[str, str] = Field(default_factory=dict)
    attachable: bool = False
    internal: bool = False
    ingress: bool = False
    ipam: list[IPAMConfig] = Field(default_factory=list)
    """The subnets the operator asked for (at most one here); empty: the allocator picks."""


class Network(StoreObject):
    kind = "network"

    spec: NetworkSpec = Field(default_factory=NetworkSpec)
    subnet: str = ""
    gateway: str = ""
    vni: int = 0
    node_addresses: dict[str, str] = Field(default_factory=dict)
    """node id -> the node's address on this network (no prefix length)."""
    node_ranges: dict[str, str] = Field(default_factory=dict)
    """Attachable networks: node id -> the block (CIDR) the node's engine gives standalone
    containers (`docker run --network`) from; reserved here, so they never collide with
    tasks, and every node forwards the whole block to its node."""

    def name_key(self) -> str | None:
        return self.spec.name or None


class NetworkAttachment(DockerModel):
    """A task's address on one network (Docker's `NetworksAttachments[]`, with the network
    reduced to its ID: the rest is one lookup away)."""

    network_id: str = ""
    addresses: list[str] = Field(default_factory=list)
    """CIDR notation, as Docker shows them: `10.0.1.5/24`."""


class VirtualIP(DockerModel):
    network_id: str = ""
    addr: str = ""
