"""The kernel half of an overlay network on one node, through iproute2 (`ip`, `bridge`).

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

Why iproute2's commands and not a netlink library in the agent (it was pyroute2): every node
of a swarm with a published port takes part in the ingress overlay, so every agent did this,
and pyroute2's IPRoute was 121 modules and 4.8 MB of every agent's RSS (unittest.mock,
multiprocessing and ctypes among them), where the agents' memory targets are 80 MB for a
manager and 50 MB for a worker (bench/README.md, "Agent memory"); in the README's demo lab
the leader sat at 80.2 MB. The links change only when the network map does (the plane keeps
what it applied), and then each function here reads with one `-json` call per table and
writes with one `-batch` process per tool, so a map with hundreds of peers is a few
processes, not hundreds. iproute2 is on every Linux host (Debian: priority important), is
what an operator uses to look at the same links, and the routing mesh already programs
netfilter with `iptables-restore` (mesh.py).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
from collections.abc import Iterable

from . import mesh

VXLAN_PORT = 4789
MTU = 1450
"""1500 on the hosts' links minus VXLAN's 50 bytes of outer headers."""


def mac_for(ip: str) -> str:
    """Docker's MAC for an IPv4 address: 02:42 followed by the address's four bytes."""
    b = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


def bridge_name(network_id: str) -> str:
    return f"skov-{network_id[:10]}"


VXLAN_PREFIX = "skvx-"


def vxlan_name(vni: int) -> str:
    return f"{VXLAN_PREFIX}{vni}"


class LinkError(RuntimeError):
    """An `ip` or `bridge` command failed: what it was and what it said."""


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return mesh._run(*args, input=stdin, check=False)
    except OSError as exc:
        raise LinkError(f"{args[0]}: {exc} (the overlay needs iproute2's ip and bridge commands)") from None


def _show(tool: str, *args: str) -> list[dict]:
    """`tool -json ARGS` parsed; [] when the device named does not exist."""
    p = _run([tool, "-json", *args])
    if p.returncode:
        if "does not exist" in p.stderr or "Cannot find device" in p.stderr:
            return []
        raise LinkError(f"{tool} {' '.join(args)}: {p.stderr.strip()}")
    return json.loads(p.stdout or "[]")


def _batch(tool: str, lines: list[str], *, quiet: bool = False) -> None:
    """Run `lines` with one `tool -batch -` process. `quiet`: every line is tried and failures
    are ignored (deleting what may already be gone), else the first failure raises."""
    if not lines:
        return
    p = _run([tool, *(["-force"] if quiet else []), "-batch", "-"], "".join(f"{line}\n" for line in lines))
    if p.returncode and not quiet:
        raise LinkError(f"{tool} -batch: {p.stderr.strip()} (commands: {'; '.join(lines)})")


def _exists(name: str) -> bool:
    """Whether link `name` exists here: the kernel's name lookup, no process started."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _inet(link: dict) -> list[dict]:
    """The IPv4 addresses of a link as `ip -json addr show` lists them."""
    return [a for a in link.get("addr_info", []) if a.get("family") == "inet"]


def ensure_vxlan(bridge: str, vni: int, local: str) -> None:
    """The VXLAN device for `vni`, in `bridge`, up; idempotent."""
    if not _exists(bridge):
        raise LinkError(f"bridge {bridge} does not exist")
    name = vxlan_name(vni)
    add = [] if _exists(name) else [
        f"link add {name} type vxlan id {vni} dstport {VXLAN_PORT} local {local} nolearning proxy"]
    _batch("ip", [*add, f"link set dev {name} mtu {MTU} master {bridge} up"])


def set_bridge_identity(bridge: str, node_ip: str, subnet: str) -> None:
    """The bridge's MAC from the node's address, that address on the bridge (/32: the
    gateway's address already gives the subnet's route), and the subnet's route sourced from
    it: every node's bridge holds the same gateway address, so a connection the node itself
    opens into the overlay (the mesh's OUTPUT path, a health probe) must not leave from the
    gateway address, or the answer would go to the other node's own bridge."""
    mac = mac_for(node_ip)
    link = _show("ip", "addr", "show", "dev", bridge)
    if not link:
        return
    todo = []
    if link[0].get("address") != mac:
        todo.append(f"link set dev {bridge} address {mac}")
    if node_ip not in {a.get("local") for a in _inet(link[0])}:
        todo.append(f"addr add {node_ip}/32 dev {bridge}")
    net = str(ipaddress.IPv4Network(subnet))
    routes = _show("ip", "route", "show", "table", "main", "dev", bridge)
    if not any(r.get("dst") == net and r.get("prefsrc") == node_ip for r in routes):
        todo.append(f"route replace {net} dev {bridge} src {node_ip} scope link proto kernel")
    _batch("ip", todo)


def set_extra_addresses(bridge: str, keep: Iterable[str], wanted: Iterable[str]) -> None:
    """/32 addresses on the bridge (the virtual IPs of services on this network): exactly
    `wanted`, leaving `keep` (gateway, node address) alone."""
    keep, wanted = set(keep), set(wanted)
    link = _show("ip", "addr", "show", "dev", bridge)
    if not link:
        return
    have = {(a["local"], a["prefixlen"]) for a in _inet(link[0])}
    gone = [f"addr del {addr}/32 dev {bridge}" for addr, plen in sorted(have)
            if plen == 32 and addr not in keep and addr not in wanted]
    present = {a for a, _ in have}
    _batch("ip", [*gone, *(f"addr add {addr}/32 dev {bridge}" for addr in sorted(wanted - present))])


def program_peers(vni: int, peers: dict[str, str]) -> tuple[int, int]:
    """Make the VXLAN device's forwarding and neighbour entries exactly `peers`
    ({remote ip: remote node address}); returns (added, removed)."""
    vx = vxlan_name(vni)
    if not _exists(vx):
        return 0, 0
    want_fdb = {mac_for(ip): vtep for ip, vtep in peers.items()}
    have_fdb = {e["mac"]: e["dst"] for e in _show("bridge", "fdb", "show", "dev", vx)
                if e.get("dst") and e.get("mac") and e["mac"] != "00:00:00:00:00:00"}
    have_neigh = {n["dst"]: n["lladdr"] for n in _show("ip", "neigh", "show", "dev", vx)
                  if n.get("dst") and n.get("lladdr")}
    stale_fdb, new_fdb = [], []
    for mac, vtep in sorted(want_fdb.items()):
        if have_fdb.get(mac) != vtep:
            if mac in have_fdb:
                stale_fdb.append(f"fdb del {mac} dev {vx} dst {have_fdb[mac]} self")
            new_fdb.append(f"fdb append {mac} dev {vx} dst {vtep} self permanent")
    removed = [f"fdb del {mac} dev {vx} dst {dst} self" for mac, dst in sorted(have_fdb.items()) if mac not in want_fdb]
    _batch("bridge", stale_fdb + removed, quiet=True)
    _batch("bridge", new_fdb)
    _batch("ip", [f"neigh del {ip} dev {vx}" for ip in sorted(have_neigh) if ip not in peers], quiet=True)
    _batch("ip", [f"neigh replace {ip} lladdr {mac_for(ip)} dev {vx} nud permanent"
                  for ip in sorted(peers) if have_neigh.get(ip) != mac_for(ip)])
    return len(new_fdb), len(removed)


def remove_vxlans_except(vnis: set[int]) -> list[str]:
    """Delete our VXLAN devices of networks that no longer exist (the engine removes the
    bridge with its network, not a device we added to it)."""
    keep = {vxlan_name(v) for v in vnis}
    # the kernel's list of names (if_nameindex: this namespace, no process started): an
    # agent's first network map asks this on every host, and a fresh host has nothing to delete
    gone = sorted(n for _, n in socket.if_nameindex() if n.startswith(VXLAN_PREFIX) and n not in keep)
    _batch("ip", [f"link del dev {name}" for name in gone], quiet=True)
    return gone
