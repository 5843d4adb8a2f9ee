"""The routing mesh and virtual IPs, as NAT rules in the node's own netfilter tables.

Swarm balances with IPVS; this kernel has none, so connections are balanced by DNAT with the
`statistic` match in `nth` mode (exact round robin over new connections; conntrack keeps a
connection on the backend its first packet chose), then masqueraded to the node's own
address on the network, so replies come back through this node whatever node the backend
runs on. Every rule lives in chains of ours (SKPY-*), rewritten whole by one
`iptables-restore --noflush` per table, which the kernel applies atomically: a backend that
leaves is gone for the next connection, and no half-written chain is ever visible.

- published ingress port P -> the service's up tasks on `ingress`: PREROUTING and OUTPUT, for
  any local destination address;
- a service's virtual IP on network N -> its up tasks on N: PREROUTING, only from N's bridge
  (a container on another network cannot use it, like the network itself);
- POSTROUTING: what was DNATed out to one of our bridges leaves with the node's address;
- FORWARD (via DOCKER-USER, which the engine evaluates first): accept what we DNATed to our
  bridges (the engine's own rules would drop it: it was not published through the engine).
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field

PREFIX = "SKPY"


@dataclass
class MeshRules:
    ingress: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    """(published port, protocol) -> ["ip:port", ...] backends."""
    vips: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """(vip, bridge) -> [task ip, ...]."""
    snat: dict[str, str] = field(default_factory=dict)
    """bridge -> the node's address on it."""


def _chain(kind: str, key: str) -> str:
    return f"{PREFIX}-{kind}-{hashlib.sha1(key.encode()).hexdigest()[:12]}".upper()


def _balance(chain: str, backends: list[str], match: str = "") -> list[str]:
    """Round robin over new connections: the i-th rule takes every (n-i)-th of what reaches
    it, the last takes the rest."""
    lines = []
    n = len(backends)
    for i, backend in enumerate(backends):
        stat = f"-m statistic --mode nth --every {n - i} --packet 0 " if i < n - 1 else ""
        lines.append(f"-A {chain} {match}{stat}-j DNAT --to-destination {backend}")
    return lines


def nat_table(rules: MeshRules) -> str:
    chains = [f"{PREFIX}-PREROUTING", f"{PREFIX}-OUTPUT", f"{PREFIX}-POSTROUTING"]
    body: list[str] = []
    # Virtual IPs first: they are local addresses too, and must not be taken for the mesh.
    for (vip, bridge), backends in sorted(rules.vips.items()):
        chain = _chain("V", vip)
        chains.append(chain)
        body.append(f"-A {PREFIX}-PREROUTING -i {bridge} -d {vip}/32 -j {chain}")
        body.extend(_balance(chain, backends))
    for (port, proto), backends in sorted(rules.ingress.items()):
        chain = _chain("I", f"{port}/{proto}")
        chains.append(chain)
        match = f"-p {proto} -m addrtype --dst-type LOCAL -m {proto} --dport {port}"
        body.append(f"-A {PREFIX}-PREROUTING {match} -j {chain}")
        body.append(f"-A {PREFIX}-OUTPUT ! -d 127.0.0.0/8 {match} -j {chain}")
        body.extend(_balance(chain, backends, f"-p {proto} "))
    for bridge, addr in sorted(rules.snat.items()):
        body.append(f"-A {PREFIX}-POSTROUTING -o {bridge} -m conntrack --ctstate DNAT "
                    f"-j SNAT --to-source {addr}")
    return "*nat\n" + "".join(f":{c} - [0:0]\n" for c in chains) + "\n".join(body) + "\nCOMMIT\n"


def filter_table() -> str:
    return (f"*filter\n:{PREFIX}-FORWARD - [0:0]\n"
            f"-A {PREFIX}-FORWARD -o skov-+ -m conntrack --ctstate DNAT -j ACCEPT\n"
            f"-A {PREFIX}-FORWARD -i skov-+ -m conntrack --ctstate RELATED,ESTABLISHED "
            "-j ACCEPT\nCOMMIT\n")


def _run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(list(args), input=input, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")
    return p


_JUMPS: set[tuple[str, str, str]] = set()
"""Jumps into our chains known to be in place (so a map update costs one restore per table,
not a dozen iptables calls); forgotten after an error, rechecked then."""


def forget_jumps() -> None:
    _JUMPS.clear()


def _ensure_jump(table: str, parent: str, chain: str) -> None:
    if (table, parent, chain) in _JUMPS:
        return
    _JUMPS.add((table, parent, chain))
    if _run("iptables", "-w", "-t", table, "-C", parent, "-j", chain, check=False).returncode:
        _run("iptables", "-w", "-t", table, "-I", parent, "1", "-j", chain)


def stale_chains(table: str, keep: str) -> list[str]:
    """Our per-service chains that the new rules no longer declare."""
    out = _run("iptables", "-w", "-t", table, "-S", check=False).stdout
    return [line.split()[1] for line in out.splitlines()
            if line.startswith(f"-N {PREFIX}-") and f":{line.split()[1]} " not in keep]


def apply(rules: MeshRules) -> None:
    nat = nat_table(rules)
    _run("iptables-restore", "-w", "--noflush", input=nat)
    _ensure_jump("nat", "PREROUTING", f"{PREFIX}-PREROUTING")
    _ensure_jump("nat", "OUTPUT", f"{PREFIX}-OUTPUT")
    _ensure_jump("nat", "POSTROUTING", f"{PREFIX}-POSTROUTING")
    declared = {line.split()[0][1:] for line in nat.splitlines() if line.startswith(":")}
    global _DECLARED
    if _DECLARED - declared:
        for chain in stale_chains("nat", nat):
            _run("iptables", "-w", "-t", "nat", "-X", chain, check=False)
    _DECLARED = declared
    if ("filter", "DOCKER-USER", f"{PREFIX}-FORWARD") in _JUMPS or \
            ("filter", "FORWARD", f"{PREFIX}-FORWARD") in _JUMPS:
        return
    _run("iptables-restore", "-w", "--noflush", input=filter_table())
    if _run("iptables", "-w", "-L", "DOCKER-USER", "-n", check=False).returncode == 0:
        _ensure_jump("filter", "DOCKER-USER", f"{PREFIX}-FORWARD")
    else:
        _ensure_jump("filter", "FORWARD", f"{PREFIX}-FORWARD")


_DECLARED: set[str] = {"*"}
"""The chains of the last restore ("*": unknown, look for stale ones on the first apply)."""
