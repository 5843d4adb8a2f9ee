"""The lab's network: one bridge on the machine, one veth + network namespace per host.

Hosts get no default route, so nothing they run can reach anything but the lab's own
subnet. Partitions are FORWARD rules on the machine side, invisible to the hosts, like a
switch dropping traffic; the controller (the bridge address) can still reach every host,
as an out-of-band management network would.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
from collections.abc import Iterable
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class NetError(RuntimeError):
    pass


def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(list(args), capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise NetError(f"{' '.join(args)}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def link_exists(dev: str) -> bool:
    return Path("/sys/class/net", dev).exists()


def netns_exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def netns_list(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def used_networks(exclude_dev: str) -> list[ipaddress.IPv4Network]:
    """Every IPv4 network configured on the machine, except on our own bridge."""
    out = run("ip", "-j", "-4", "addr").stdout
    nets = []
    for link in json.loads(out or "[]"):
        if link.get("ifname") == exclude_dev:
            continue
        for a in link.get("addr_info", []):
            nets.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
    return nets


def ensure_bridge(bridge: str, gw: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> None:
    if not link_exists(bridge):
        run("ip", "link", "add", bridge, "type", "bridge")
    have = run("ip", "-j", "-4", "addr", "show", "dev", bridge).stdout
    cidr = f"{gw}/{subnet.prefixlen}"
    addrs = {f"{a['local']}/{a['prefixlen']}" for lk in json.loads(have or "[]") for a in lk.get("addr_info", [])}
    if cidr not in addrs:
        run("ip", "addr", "add", cidr, "dev", bridge)
    run("ip", "link", "set", bridge, "up")


def ensure_host_link(bridge: str, veth: str, ns: str, addr: ipaddress.IPv4Address, prefixlen: int) -> None:
    """Netns with eth0 = addr, lo up, no default route; the outer veth end enslaved to the bridge."""
    if not netns_exists(ns):
        run("ip", "netns", "add", ns)
    if not link_exists(veth):
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "-n", ns, "addr", "add", f"{addr}/{prefixlen}", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "link", "set", veth, "master", bridge, "up")


def set_link(dev: str, up: bool) -> None:
    run("ip", "link", "set", dev, "up" if up else "down")


def link_is_up(dev: str) -> bool:
    try:
        return bool(int(Path("/sys/class/net", dev, "flags").read_text(), 16) & 1)  # IFF_UP
    except OSError:
        return False


def delete_link(dev: str) -> None:
    if link_exists(dev):
        run("ip", "link", "del", dev, check=False)


def delete_netns(ns: str) -> None:
    if netns_exists(ns):
        run("ip", "netns", "del", ns, check=False)


# --- iptables: rules are only ever added and deleted one by one, matched by our comment tag ---

def _rule(bridge: str, tag: str, extra: Iterable[str], target: str) -> list[str]:
    return ["FORWARD", "-i", bridge, "-o", bridge, *extra, "-m", "comment", "--comment", tag, "-j", target]


def ensure_forward_accept(bridge: str, tag: str) -> None:
    """Docker sets FORWARD to DROP and bridged frames traverse iptables: without this rule the
    controller reaches every host but hosts cannot reach each other."""
    rule = _rule(bridge, tag, [], "ACCEPT")
    if run("iptables", "-C", *rule, check=False).returncode != 0:
        run("iptables", "-I", *rule)


def add_drop(bridge: str, tag: str, src: str, dst: str) -> None:
    rule = _rule(bridge, tag, ["-s", f"{src}/32", "-d", f"{dst}/32"], "DROP")
    if run("iptables", "-C", *rule, check=False).returncode != 0:
        run("iptables", "-I", *rule)


def tagged_rules(tag: str) -> list[list[str]]:
    """FORWARD rules carrying exactly this comment, as argument lists for `iptables -D`."""
    rules = []
    for line in run("iptables", "-S", "FORWARD").stdout.splitlines():
        words = shlex.split(line)
        if words[:1] != ["-A"]:
            continue
        if "--comment" in words and words[words.index("--comment") + 1] == tag:
            rules.append(words[1:])
    return rules


def delete_tagged(tag: str) -> int:
    rules = tagged_rules(tag)
    for r in rules:
        run("iptables", "-D", *r, check=False)
    return len(rules)
