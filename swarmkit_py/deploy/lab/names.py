"""Names of everything a lab creates on the machine, derived from the lab's name.

Two labs (a demo lab and a test's lab) must coexist and neither may ever touch the other's
bridge, namespaces, cgroups or iptables rules, so every name carries a short digest of the lab
name and nothing is ever matched by a broad pattern.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")

# The default lab gets the subnet the notes and the docs show; other labs get a /24 of
# 10.77.0.0/16 picked from their name, so a test's lab does not collide with the demo lab.
DEFAULT_LAB = "lab"
DEFAULT_SUBNET = "10.77.0.0/24"
FIRST_HOST_OFFSET = 10  # h1 is .11, h2 is .12, ...
MAX_HOSTS = 200


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(
            f"lab name {name!r}: use 1-24 lowercase letters, digits or '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class LabNames:
    """Kernel object names; interface names are capped at 15 characters, hence the digest."""

    name: str

    @property
    def short(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:6]

    @property
    def bridge(self) -> str:
        return f"skpy{self.short}br"

    def veth(self, host: str) -> str:
        return f"skpy{self.short}{host}"

    def netns(self, host: str) -> str:
        return f"skpy-{self.name}-{host}"

    @property
    def netns_prefix(self) -> str:
        return f"skpy-{self.name}-"

    @property
    def cgroup(self) -> str:
        """Relative path of the lab's cgroup; each host is a child named after it."""
        return f"skpy-{self.name}"

    def cgroup_parent(self, host: str) -> str:
        """Docker's --cgroup-parent: the same path, so containers nest under the host's cgroup."""
        return f"/{self.cgroup}/{host}"

    @property
    def rule_tag(self) -> str:
        return f"skpy-lab-{self.name}"

    @property
    def partition_tag(self) -> str:
        return f"skpy-lab-{self.name}-partition"


def host_name(i: int) -> str:
    return f"h{i}"


def host_index(host: str) -> int:
    m = re.fullmatch(r"h([1-9][0-9]*)", host)
    if not m:
        raise ValueError(f"{host!r} is not a lab host name (h1, h2, ...)")
    return int(m.group(1))


def preferred_subnet(name: str) -> ipaddress.IPv4Network:
    if name == DEFAULT_LAB:
        return ipaddress.IPv4Network(DEFAULT_SUBNET)
    third = 1 + int(hashlib.sha256(name.encode()).hexdigest(), 16) % 250
    return ipaddress.IPv4Network(f"10.77.{third}.0/24")


def gateway(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    return subnet.network_address + 1


def host_address(subnet: ipaddress.IPv4Network, i: int) -> ipaddress.IPv4Address:
    addr = subnet.network_address + FIRST_HOST_OFFSET + i
    if addr not in subnet or addr == subnet.broadcast_address:
        raise ValueError(f"subnet {subnet} has no room for host {i}")
    return addr
