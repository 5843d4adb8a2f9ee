"""The kernel half of an overlay network on one node, through netlink (pyroute2).

Each overlay the node takes part in is a Linux bridge (made by the local engine as a
user-defined bridge network, so `docker inspect` shows the container's address and the
engine wires the veth) plus a VXLAN device enslaved to it, as libnetwork's overlay driver
does inside its own namespace. The VXLAN device runs without learning and with ARP proxy:
the forwarding database (container MAC -> remote node) and the neighbour table (remote
address -> MAC) are programmed from the leader's network map, so no broadcast ever crosses
nodes (each node's bridge holds the same gateway address; an ARP for it is answered locally
and never flooded), and an entry appears or goes as tasks come and go.

The bridge's MAC is set from the node's own address on the network, so peers can compute it
(as containers' MACs are computed from their addresses: Docker's 02:42 + IPv4 rule).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyroute2 import IPRoute

VXLAN_PORT = 4789
MTU = 1450
"""1500 on the hosts' links minus VXLAN's 50 bytes of outer headers."""

NUD_PERMANENT = 0x80
NTF_SELF = 0x02


def mac_for(ip: str) -> str:
    """Docker's MAC for an IPv4 address: 02:42 followed by the address's four bytes."""
    b = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


def bridge_name(network_id: str) -> str:
    return f"skov-{network_id[:10]}"


VXLAN_PREFIX = "skvx-"


def vxlan_name(vni: int) -> str:
    return f"{VXLAN_PREFIX}{vni}"


def _iproute() -> IPRoute:
    """pyroute2 is imported on first use, and only its IPRoute part (`_pyroute2`)."""
    _pyroute2()
    from pyroute2.iproute.linux import IPRoute

    return IPRoute()


def _pyroute2() -> None:
    """Make `pyroute2` importable without running its package's __init__, unless something
    imported it already.

    That __init__ imports every part of the library (NDB with sqlite3, IPDB, nftables, wifi,
    plan9...: 198 modules, 10.7 MB of RSS, measured with pyroute2 0.9.7); IPRoute's own module
    is 126 modules and ~5 MB. It matters because with a published port every node takes
    part in the routing mesh's overlay (ingress), so every worker imports this: in the
    README's demo lab a worker sat at 52.3 MB at rest, over the 50 MB target. The __init__
    does nothing but those imports, so it is not lost: the package is registered without it.
    A name asked of the package that is one of its modules (`from pyroute2 import config`, as
    its own modules do) is that module; any other name (`from pyroute2 import NDB`, anywhere
    in the process) runs the __init__ then (`__getattr__`, PEP 562), as a plain import would
    have. Under a lock: the links run on pool threads (the network plane, `asyncio.to_thread`)."""
    with _PYROUTE2_LOCK:
        if "pyroute2" not in sys.modules:
            _register_pyroute2()


_PYROUTE2_LOCK = threading.Lock()


def _register_pyroute2() -> None:
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return  # not installed as a package: the import itself says so
    pkg = importlib.util.module_from_spec(spec)

    def complete(name: str):
        if not name.startswith("__"):
            try:
                return importlib.import_module(f"pyroute2.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"pyroute2.{name}":
                    raise
        del pkg.__getattr__  # the __init__ runs once; a name it does not define then fails as usual
        spec.loader.exec_module(pkg)
        return getattr(pkg, name)

    pkg.__getattr__ = complete
    sys.modules["pyroute2"] = pkg


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def ensure_vxlan(bridge: str, vni: int, local: str) -> None:
    """The VXLAN device for `vni`, in `bridge`, up; idempotent."""
    with _iproute() as ipr:
        br = _index(ipr, bridge)
        if br is None:
            raise RuntimeError(f"bridge {bridge} does not exist")
        name = vxlan_name(vni)
        vx = _index(ipr, name)
        if vx is None:
            ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_port=VXLAN_PORT,
                     vxlan_local=local, vxlan_learning=0, vxlan_proxy=1)
            vx = _index(ipr, name)
        ipr.link("set", index=vx, mtu=MTU)
        ipr.link("set", index=vx, master=br)
        ipr.link("set", index=vx, state="up")


def set_bridge_identity(bridge: str, node_ip: str, subnet: str) -> None:
    """The bridge's MAC from the node's address, that address on the bridge (/32: the
    gateway's address already gives the subnet's route), and the subnet's route sourced from
    it: every node's bridge holds the same gateway address, so a connection the node itself
    opens into the overlay (the mesh's OUTPUT path, a health probe) must not leave from the
    gateway address, or the answer would go to the other node's own bridge."""
    mac = mac_for(node_ip)
    with _iproute() as ipr:
        br = _index(ipr, bridge)
        if br is None:
            return
        link = ipr.get_links(br)[0]
        if link.get_attr("IFLA_ADDRESS") != mac:
            ipr.link("set", index=br, address=mac)
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=br)}
        if node_ip not in have:
            ipr.addr("add", index=br, address=node_ip, prefixlen=32)
        net = ipaddress.IPv4Network(subnet)
        routes = ipr.get_routes(family=2, dst=str(net.network_address), dst_len=net.prefixlen,
                                oif=br, table=254)
        if not any(r.get_attr("RTA_PREFSRC") == node_ip for r in routes):
            ipr.route("replace", dst=str(net), oif=br, prefsrc=node_ip, scope=253, proto=2)


def set_extra_addresses(bridge: str, keep: Iterable[str], wanted: Iterable[str]) -> None:
    """/32 addresses on the bridge (the virtual IPs of services on this network): exactly
    `wanted`, leaving `keep` (gateway, node address) alone."""
    keep, wanted = set(keep), set(wanted)
    with _iproute() as ipr:
        br = _index(ipr, bridge)
        if br is None:
            return
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=br)}
        for addr, plen in have:
            if plen == 32 and addr not in keep and addr not in wanted:
                ipr.addr("del", index=br, address=addr, prefixlen=32)
        present = {a for a, _ in have}
        for addr in wanted - present:
            ipr.addr("add", index=br, address=addr, prefixlen=32)


def program_peers(vni: int, peers: dict[str, str]) -> tuple[int, int]:
    """Make the VXLAN device's forwarding and neighbour entries exactly `peers`
    ({remote ip: remote node address}); returns (added, removed)."""
    with _iproute() as ipr:
        vx = _index(ipr, vxlan_name(vni))
        if vx is None:
            return 0, 0
        want_fdb = {mac_for(ip): vtep for ip, vtep in peers.items()}
        have_fdb: dict[str, str] = {}
        for e in ipr.fdb("dump", ifindex=vx):
            if e["ifindex"] != vx:
                continue
            mac, dst = e.get_attr("NDA_LLADDR"), e.get_attr("NDA_DST")
            if mac and dst and mac != "00:00:00:00:00:00":
                have_fdb[mac] = dst
        have_neigh: dict[str, str] = {}
        for n in ipr.get_neighbours(ifindex=vx, family=2):
            if n.get_attr("NDA_DST") and n.get_attr("NDA_LLADDR"):
                have_neigh[n.get_attr("NDA_DST")] = n.get_attr("NDA_LLADDR")
        added = removed = 0
        for mac, vtep in want_fdb.items():
            if have_fdb.get(mac) != vtep:
                if mac in have_fdb:
                    _quiet(ipr.fdb, "del", ifindex=vx, lladdr=mac, dst=have_fdb[mac])
                ipr.fdb("append", ifindex=vx, lladdr=mac, dst=vtep, state=NUD_PERMANENT)
                added += 1
        for mac, dst in have_fdb.items():
            if mac not in want_fdb:
                _quiet(ipr.fdb, "del", ifindex=vx, lladdr=mac, dst=dst)
                removed += 1
        for ip in peers:
            if have_neigh.get(ip) != mac_for(ip):
                ipr.neigh("replace", dst=ip, lladdr=mac_for(ip), ifindex=vx, state=NUD_PERMANENT)
        for ip in have_neigh:
            if ip not in peers:
                _quiet(ipr.neigh, "del", dst=ip, ifindex=vx)
        return added, removed


def remove_vxlans_except(vnis: set[int]) -> list[str]:
    """Delete our VXLAN devices of networks that no longer exist (the engine removes the
    bridge with its network, not a device we added to it)."""
    keep = {vxlan_name(v) for v in vnis}

    def stale(name: str) -> bool:
        return name.startswith(VXLAN_PREFIX) and name not in keep

    # the kernel's list of names first (if_nameindex: netlink, this namespace, no pyroute2): an
    # agent's first network map asks this on every host, and a fresh host has nothing to
    # delete; importing pyroute2 for that was ~0.1 s of its CPU at every agent start
    if not any(stale(n) for _, n in socket.if_nameindex()):
        return []
    gone = []
    with _iproute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            if stale(name):
                _quiet(ipr.link, "del", index=link["index"])
                gone.append(name)
    return gone


def _quiet(fn, *args, **kw) -> None:
    try:
        fn(*args, **kw)
    except _netlink_error():
        pass


def _netlink_error() -> type[Exception]:
    _pyroute2()
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError
