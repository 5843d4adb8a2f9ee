"""Address management for overlay networks, without I/O: subnets, VXLAN ids, addresses.

The leader is the only allocator and every allocation is written to the store through Raft,
so "what is in use" is always computed from the store itself (the networks, the live tasks'
attachments, the services' virtual IPs, the nodes' addresses), and a new leader simply reads
the same facts. The tasks' part is counted from the task stream (loop.TaskIndex), which
starts from a full read of the store. An address is free again once the task holding it
has ended, as in Docker's IPAM; addresses are handed out after the last one given (not the
lowest free one), so a just-released address is not immediately reused while stale DNS
answers or conntrack entries may still point at it.

Defaults follow Docker Swarm: `ingress` is 10.0.0.0/24 with VXLAN id 4096, other overlays
get the next free /24 of 10.0.0.0/8 and the next VXLAN id from 4097; the gateway is the
subnet's first address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container, Iterable

from ...store import Network, NetworkSpec

DEFAULT_POOL = ipaddress.IPv4Network("10.0.0.0/8")
DEFAULT_PREFIX = 24
DATA_PATH_PORT = 4789
"""The VXLAN UDP port every node's overlay uses (worker/network/links.py, VXLAN_PORT):
Docker's DataPathPort default, shown by `GET /swarm`."""
INGRESS_SUBNET = "10.0.0.0/24"
INGRESS_NAME = "ingress"
FIRST_VNI = 4096
MAX_VNI = (1 << 24) - 1
SMALLEST_PREFIX = 29
"""A /30 has two host addresses: a gateway and one node. /29 is the least that is useful."""


class IPAMError(ValueError):
    """A request that cannot be satisfied: says what was wrong and what to do."""


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise IPAMError(f"invalid subnet {text!r}: use CIDR notation, e.g. 10.0.9.0/24") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise IPAMError(f"subnet {text}: only IPv4 overlay networks are supported")
    if ipaddress.ip_interface(text).ip != net.network_address:
        raise IPAMError(f"invalid subnet {text}: host bits are set; did you mean {net}?")
    if net.prefixlen > SMALLEST_PREFIX:
        raise IPAMError(f"subnet {net} is too small: use a /{SMALLEST_PREFIX} or larger")
    return net


def check_gateway(subnet: ipaddress.IPv4Network, gateway: str | None) -> ipaddress.IPv4Address:
    if not gateway:
        return next(subnet.hosts())
    try:
        gw = ipaddress.IPv4Address(gateway)
    except ValueError:
        raise IPAMError(f"invalid gateway {gateway!r}: expected an IPv4 address") from None
    if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
        raise IPAMError(f"gateway {gw} is not a host address of subnet {subnet}")
    return gw


def overlapping(subnet: ipaddress.IPv4Network,
                taken: Iterable[tuple[str, ipaddress.IPv4Network]]) -> str | None:
    """The name of the first network whose subnet overlaps `subnet`, if any."""
    for name, other in taken:
        if subnet.overlaps(other):
            return name
    return None


def pick_subnet(taken: Iterable[ipaddress.IPv4Network],
                pool: ipaddress.IPv4Network = DEFAULT_POOL,
                prefix: int = DEFAULT_PREFIX) -> ipaddress.IPv4Network:
    taken = list(taken)
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise IPAMError(f"no free /{prefix} left in the address pool {pool}: remove unused "
                    "networks (docker network prune) or give --subnet explicitly")


def pick_vni(taken: Iterable[int], *, ingress: bool = False) -> int:
    used = set(taken)
    start = FIRST_VNI if ingress else FIRST_VNI + 1
    for vni in range(start, MAX_VNI + 1):
        if vni not in used:
            return vni
    raise IPAMError("no free VXLAN id left")


class AddressPool:
    """The free host addresses of one subnet, given out after the last one handed out.

    In use: `used` (addresses, with or without a prefix) and whatever `held` contains (plain
    address strings: the tasks' addresses, which the allocator keeps counted and does not
    copy in for every pass)."""

    def __init__(self, subnet: ipaddress.IPv4Network, used: Iterable[str], after: str | None = None,
                 held: Container[str] = ()):
        self.subnet = subnet
        self.used = {ipaddress.IPv4Address(a.split("/")[0]) for a in used if a}
        self.held = held
        self._cursor = int(ipaddress.IPv4Address(after)) if after else int(subnet.network_address)
        self._full = False

    def in_use(self, addr: str) -> bool:
        ip = ipaddress.IPv4Address(addr.split("/")[0])
        return ip in self.used or str(ip) in self.held

    def allocate(self) -> str:
        if self._full:  # nothing is freed while a pool lives (one allocator pass): fail at once
            raise self._full_error()
        first = int(self.subnet.network_address) + 1
        last = int(self.subnet.broadcast_address) - 1
        size = last - first + 1
        start = self._cursor + 1
        for i in range(size):
            n = first + (start - first + i) % size
            addr = ipaddress.IPv4Address(n)
            if addr not in self.used and str(addr) not in self.held:
                self.used.add(addr)
                self._cursor = n
                return str(addr)
        self._full = True
        raise self._full_error()

    def _full_error(self) -> IPAMError:
        return IPAMError(f"no free address left in {self.subnet}: the network is full "
                         "(remove tasks from it or use a larger --subnet)")

    def reserve_block(self, prefix: int = 28) -> str | None:
        """The highest free aligned block of the subnet (a node's range for standalone
        containers on an attachable network); its addresses become used."""
        if prefix <= self.subnet.prefixlen:
            return None
        for block in reversed(list(self.subnet.subnets(new_prefix=prefix))):
            if block.network_address == self.subnet.network_address:
                continue
            addrs = set(block) - {self.subnet.broadcast_address}
            if not addrs & self.used and not any(str(a) in self.held for a in addrs):
                self.used |= addrs
                return str(block)
        return None

    def cidr(self, addr: str) -> str:
        return f"{addr}/{self.subnet.prefixlen}"


def allocate_network(existing: list[Network], spec: NetworkSpec, network_id: str) -> Network:
    """The network with its subnet, gateway and VXLAN id, or IPAMError saying why not."""
    taken = [(n.spec.name, parse_subnet(n.subnet)) for n in existing if n.subnet]
    if spec.ipam and spec.ipam[0].subnet:
        subnet = parse_subnet(spec.ipam[0].subnet)
        clash = overlapping(subnet, taken)
        if clash is not None:
            raise IPAMError(
                f"invalid pool request: subnet {subnet} overlaps network {clash!r} "
                f"({dict(taken)[clash]}); choose another --subnet or leave it out")
    elif spec.ingress and overlapping(parse_subnet(INGRESS_SUBNET), taken) is None:
        subnet = parse_subnet(INGRESS_SUBNET)
    else:
        subnet = pick_subnet(t for _, t in taken)
    gateway = check_gateway(subnet, spec.ipam[0].gateway if spec.ipam else None)
    vni = pick_vni((n.vni for n in existing), ingress=spec.ingress)
    return Network(id=network_id, spec=spec, subnet=str(subnet), gateway=str(gateway), vni=vni)
