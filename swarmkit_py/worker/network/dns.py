"""The embedded DNS server for task containers (Docker's service discovery), with dnslib.

One UDP socket per local overlay network, bound to the network's gateway address on this
node's bridge (every node has that address on its own bridge, so a container always asks its
own node); task containers are created with it as their DNS server. Docker's own resolver
inside the container (127.0.0.11) answers the engine's local names and hands everything else
to us. A query is answered from the leader's network map, for the network the asking
container is on (its source address says which), as Swarm answers:
- `<service>`: the service's virtual IP on that network, or with `--endpoint-mode dnsrr` the
  addresses of its running tasks; network aliases answer the same way;
- `tasks.<service>`: the addresses of its running tasks;
- `<service>.<slot>.<task id>` (the task's name): that task's address.
Anything else goes to the host's own resolvers (/etc/resolv.conf), and SERVFAIL if none
answers, so a container's other lookups behave as on the host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PORT = 53
TTL = 0
"""Swarm answers with TTL 600 for VIPs; 0 here so a dnsrr list is never cached stale."""
UPSTREAM_TIMEOUT = 2.0


@dataclass
class Records:
    """Per network: lower-case name -> addresses."""

    by_network: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    subnets: dict[str, ipaddress.IPv4Network] = field(default_factory=dict)

    def network_of(self, addr: str) -> str | None:
        ip = ipaddress.IPv4Address(addr)
        for nid, net in self.subnets.items():
            if ip in net:
                return nid
        return None

    def lookup(self, network_id: str, name: str) -> list[str] | None:
        return self.by_network.get(network_id, {}).get(name.rstrip(".").lower())


def build_records(netmap: dict) -> Records:
    rec = Records()
    services = {s["id"]: s for s in netmap.get("services", [])}
    for n in netmap.get("networks", []):
        rec.subnets[n["id"]] = ipaddress.IPv4Network(n["subnet"])
        rec.by_network[n["id"]] = {}
    for t in netmap.get("tasks", []):
        svc = services.get(t["service_id"])
        for nid, ip in t["addrs"].items():
            names = rec.by_network.setdefault(nid, {})
            names.setdefault(t["name"].lower(), []).append(ip)
            if svc is None or not t["up"]:
                continue
            names.setdefault(f"tasks.{svc['name']}".lower(), []).append(ip)
            if svc["mode"] == "dnsrr":
                names.setdefault(svc["name"].lower(), []).append(ip)
            for alias in t.get("aliases", {}).get(nid, []):
                if svc["mode"] == "dnsrr":
                    names.setdefault(alias.lower(), []).append(ip)
    for svc in services.values():
        for nid, vip in svc["vips"].items():
            names = rec.by_network.setdefault(nid, {})
            names[svc["name"].lower()] = [vip]
    for t in netmap.get("tasks", []):
        svc = services.get(t["service_id"])
        if svc is None or svc["mode"] != "vip":
            continue
        for nid, aliases in t.get("aliases", {}).items():
            vip = svc["vips"].get(nid)
            for alias in aliases:
                if vip:
                    rec.by_network.setdefault(nid, {})[alias.lower()] = [vip]
    return rec


def upstream_servers(path: str = "/etc/resolv.conf") -> list[str]:
    out = []
    try:
        for line in open(path):
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                out.append(words[1])
    except OSError:
        pass
    return out


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        asyncio.ensure_future(self.server.answer(self, data, addr))


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, fut: asyncio.Future) -> None:
        self.fut = fut

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.fut.done():
            self.fut.set_result(data)


class DNSServer:
    def __init__(self, upstream: list[str] | None = None) -> None:
        self.records = Records()
        self.upstream = upstream if upstream is not None else upstream_servers()
        self._sockets: dict[str, asyncio.DatagramTransport] = {}
        self.answered = 0
        self.forwarded = 0

    async def listen_on(self, addrs: set[str]) -> None:
        loop = asyncio.get_running_loop()
        for addr in set(self._sockets) - addrs:
            self._sockets.pop(addr).close()
        for addr in addrs - set(self._sockets):
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self), local_addr=(addr, PORT))
            except OSError as exc:
                log.warning("DNS: cannot listen on %s:%d: %s", addr, PORT, exc)
                continue
            self._sockets[addr] = transport

    def close(self) -> None:
        for t in self._sockets.values():
            t.close()
        self._sockets.clear()

    async def answer(self, proto: _Protocol, data: bytes, addr) -> None:
        # dnslib on the first query: 0.6 MB of a worker's RSS (bench/agent_rss.py) that a node
        # whose tasks join no overlay network, or that runs no kernel dataplane, never uses.
        from dnslib import QTYPE, RCODE, RR, A, DNSRecord

        try:
            query = DNSRecord.parse(data)
        except Exception:
            return
        reply = query.reply()
        q = query.q
        network = self.records.network_of(addr[0])
        found = self.records.lookup(network, str(q.qname)) if network else None
        if found is not None:
            if q.qtype in (QTYPE.A, QTYPE.ANY):
                ips = list(found)
                random.shuffle(ips)
                for ip in ips:
                    reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
            self.answered += 1
            proto.transport.sendto(reply.pack(), addr)
            return
        answer = await self._forward(data)
        if answer is None:
            reply.header.rcode = RCODE.SERVFAIL
            answer = reply.pack()
        self.forwarded += 1
        proto.transport.sendto(answer, addr)

    async def _forward(self, data: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        for server in self.upstream:
            fut: asyncio.Future = loop.create_future()
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda f=fut: _Upstream(f), remote_addr=(server, PORT))
            except OSError:
                continue
            try:
                transport.sendto(data)
                return await asyncio.wait_for(fut, UPSTREAM_TIMEOUT)
            except (TimeoutError, OSError):
                continue
            finally:
                transport.close()
        return None
