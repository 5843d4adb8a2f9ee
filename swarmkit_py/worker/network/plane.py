"""The node's network plane: local engine networks, VXLAN peers, mesh rules and DNS, kept in
line with the leader's network map (manager/dispatcher/netmap.py).

Two entry points:
- `ensure(attachments)`: before a task's container is created, its networks exist locally
  (engine network with the task's subnet and gateway, bridge named after the network, VXLAN
  device in it). The assignment carries everything needed, so this never waits for a map.
- `on_netmap(map)`: every push; the latest map wins and is applied by one worker task in a
  thread (netlink, iptables-restore and the engine's API all block): forwarding entries for
  tasks and nodes elsewhere, the node's own address and the virtual IPs on each bridge, the
  mesh's NAT rules, DNS records. The ingress network exists on every node as soon as any
  service publishes an ingress port: every node accepts on the port.

`kernel=False` (agents sharing one machine's namespace, as the integration tests run) keeps
the engine networks, which are the engine's own business, and skips everything that would
write into the machine's netfilter tables or links.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

from ...background import Background
from ...engine import APIError, Engine, NotFound
from ...proto import NetAttachment
from . import links, mesh
from .dns import DNSServer, build_records

log = logging.getLogger(__name__)

LABEL_NETWORK_ID = "com.swarmkit-py.network.id"
RETRY_FIRST, RETRY_MAX = 0.5, 10.0
"""Seconds before a failed map is tried again: the first delay, doubled up to the second."""
RETRY_LEFTOVER = 1.0
"""Seconds between tries to remove an engine network a stopping container still holds."""


def engine_network(client: Engine, network_id: str, name: str, subnet: str,
                   gateway: str, internal: bool, ip_range: str | None = None) -> None:
    """The engine's bridge network for an overlay, made once (looked up by our label).

    The engine's own address pool for it is `ip_range`: the node's block of an attachable
    network, or else just the gateway, which is always taken, so `docker run --network` of a
    standalone container fails ("no available IPv4 addresses") instead of taking an address
    the leader may give a task elsewhere; tasks are created with their address and are not
    bound by the pool."""
    found = client.networks(filters={"label": f"{LABEL_NETWORK_ID}={network_id}"})
    if found:
        return
    config: dict[str, Any] = {
        "Name": name, "Driver": "bridge", "CheckDuplicate": True,
        "Labels": {LABEL_NETWORK_ID: network_id},
        "Options": {"com.docker.network.bridge.name": links.bridge_name(network_id),
                    "com.docker.network.driver.mtu": str(links.MTU)},
        "IPAM": {"Driver": "default", "Config": [
            {"Subnet": subnet, "Gateway": gateway, "IPRange": ip_range or f"{gateway}/32"}]},
    }
    if internal:
        config["Internal"] = True
    try:
        client.create_network(config)
    except APIError as exc:
        if exc.status_code != 409:
            raise
        raise RuntimeError(
            f"the engine already has a network named {name!r} that swarmkit-py did not make: "
            f"remove it (docker network rm {name}) so the overlay can use the name") from None


class NetworkPlane:
    def __init__(self, node_id: str, local_addr: str, client_factory: Callable[[], Any], *,
                 kernel: bool = True) -> None:
        self.node_id = node_id
        self.local_addr = local_addr
        self._client_factory = client_factory
        self.kernel = kernel
        self.dns = DNSServer()
        self._latest: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._loop_job = Background("network-plane", self._loop)
        self._lock = asyncio.Lock()
        self.applied = 0
        self.last_apply_s = 0.0
        self._engine_networks: set[str] = set()
        """Networks known to exist on the engine (checked once; re-checked after an error)."""
        self._known_networks: set[str] | None = None
        self._links_applied: dict[str, tuple] = {}
        """Per network, the inputs its links were last programmed from (skip when equal)."""
        self._rules_applied: mesh.MeshRules | None = None
        self.leftover: set[str] = set()
        """Engine networks of removed overlays still held by stopping containers."""

    def start(self) -> None:
        self._loop_job.start()

    async def stop(self) -> None:
        await self._loop_job.stop()
        self.dns.close()

    # -- before a container is created ----------------------------------------------------

    async def ensure(self, attachments: tuple[NetAttachment, ...]) -> None:
        if not attachments:
            return
        async with self._lock:
            await asyncio.to_thread(self._ensure_sync, attachments)

    def _ensure_sync(self, attachments) -> None:
        client = self._client_factory()
        for a in attachments:
            self._engine_network(client, a.network_id, a.name, a.subnet, a.gateway, a.internal,
                                 a.ip_range)
            if self.kernel:
                links.ensure_vxlan(links.bridge_name(a.network_id), a.vni, self.local_addr)

    # -- the map --------------------------------------------------------------------------

    def on_netmap(self, params: Any) -> None:
        if isinstance(params, dict) and isinstance(params.get("networks"), list):
            self._latest = params
            self._wake.set()

    async def _loop(self) -> None:
        failures, last_error = 0, ""
        while True:
            await self._wake.wait()
            self._wake.clear()
            netmap = self._latest
            try:
                started = time.monotonic()
                async with self._lock:
                    gateways = await asyncio.to_thread(self._apply_sync, netmap)
                self.dns.records = build_records(netmap)
                if self.kernel:
                    await self.dns.listen_on(gateways)
                self.applied += 1
                self.last_apply_s = time.monotonic() - started
                if failures:
                    log.info("the network map is applied again, after %d failed attempts", failures)
                    failures, last_error = 0, ""
                if self.leftover:
                    asyncio.get_running_loop().call_later(RETRY_LEFTOVER, self._wake.set)
            except Exception as exc:
                # Tried again at once when a new map comes, else after a delay doubling up to
                # RETRY_MAX while it fails (the engine down for an hour was two tracebacks a
                # second); the traceback is logged once per kind of failure.
                failures += 1
                delay = min(RETRY_FIRST * 2 ** (failures - 1), RETRY_MAX)
                error = f"{type(exc).__name__}: {exc}"
                if error != last_error:
                    log.exception("applying the network map failed; trying again in %.1fs and "
                                  "then less often while it fails the same way", delay)
                    last_error = error
                else:
                    log.debug("applying the network map failed again (%d times): %s", failures, error)
                self._engine_networks.clear()
                self._links_applied.clear()
                self._rules_applied = None
                mesh.forget_jumps()
                if self._latest is netmap:
                    try:
                        await asyncio.wait_for(self._wake.wait(), delay)
                    except TimeoutError:
                        pass
                self._wake.set()

    def _apply_sync(self, netmap: dict[str, Any]) -> set[str]:
        me = self.node_id
        nodes: dict[str, str] = netmap.get("nodes", {})
        networks = {n["id"]: n for n in netmap["networks"]}
        services = {s["id"]: s for s in netmap.get("services", [])}
        tasks = netmap.get("tasks", [])
        ingress = next((n for n in networks.values() if n["ingress"]), None)

        local = {nid for t in tasks if t["node_id"] == me for nid in t["addrs"]}
        local |= {nid for nid, n in networks.items() if n.get("node_ranges", {}).get(me)}
        if ingress is not None and any(s["ports"] for s in services.values()):
            local.add(ingress["id"])
        client = self._client_factory()
        if set(networks) != self._known_networks:
            self._remove_gone(client, set(networks))
            if self.kernel:
                links.remove_vxlans_except({n["vni"] for n in networks.values()})
            self._known_networks = set(networks)
        elif self.leftover:
            self._remove_gone(client, set(networks))
        rules = mesh.MeshRules()
        gateways: set[str] = set()
        for nid in sorted(local):
            n = networks.get(nid)
            if n is None:
                continue
            self._engine_network(client, nid, n["name"], n["subnet"], n["gateway"], n["internal"],
                                 n.get("node_ranges", {}).get(me))
            if not self.kernel:
                continue
            bridge = links.bridge_name(nid)
            my_addr = n["node_addresses"].get(me)
            if my_addr:
                rules.snat[bridge] = my_addr
            gateways.add(n["gateway"])
            peers = {t["addrs"][nid]: nodes[t["node_id"]] for t in tasks
                     if nid in t["addrs"] and t["node_id"] != me and t["node_id"] in nodes}
            for node_id, addr in n["node_addresses"].items():
                if node_id != me and node_id in nodes:
                    peers[addr] = nodes[node_id]
            for node_id, block in n.get("node_ranges", {}).items():
                if node_id != me and node_id in nodes:
                    for a in ipaddress.ip_network(block):
                        peers[str(a)] = nodes[node_id]
            vips = []
            for s in services.values():
                vip = s["vips"].get(nid)
                if not vip or s["mode"] != "vip":
                    continue
                vips.append(vip)
                rules.vips[(vip, bridge)] = [t["addrs"][nid] for t in tasks
                                             if t["up"] and t["service_id"] == s["id"]
                                             and nid in t["addrs"]]
            state = (n["vni"], n["subnet"], my_addr, tuple(sorted(peers.items())),
                     tuple(sorted(vips)))
            if self._links_applied.get(nid) == state:
                continue  # a task changed state elsewhere: only the NAT rules differ
            links.ensure_vxlan(bridge, n["vni"], self.local_addr)
            if my_addr:
                links.set_bridge_identity(bridge, my_addr, n["subnet"])
            links.program_peers(n["vni"], peers)
            links.set_extra_addresses(bridge, [n["gateway"], my_addr or ""], vips)
            self._links_applied[nid] = state
        if self.kernel and ingress is not None and ingress["id"] in local:
            for s in services.values():
                for published, target, proto in s["ports"]:
                    rules.ingress[(published, proto)] = [
                        f"{t['addrs'][ingress['id']]}:{target}" for t in tasks
                        if t["up"] and t["service_id"] == s["id"] and ingress["id"] in t["addrs"]]
        if self.kernel and rules != self._rules_applied:
            mesh.apply(rules)
            self._rules_applied = rules
        return gateways

    def _engine_network(self, client, nid, name, subnet, gateway, internal, ip_range) -> None:
        if nid in self._engine_networks:
            return
        engine_network(client, nid, name, subnet, gateway, internal, ip_range)
        self._engine_networks.add(nid)

    def _remove_gone(self, client, known: set[str]) -> None:
        """Remove the engine networks of overlays the swarm no longer has. One whose last
        containers are still stopping (the swarm lets a network go once its tasks are told to
        stop) refuses; it is `leftover` and tried again until it goes (`_loop`), else it would
        stay on the host for good, and a network of the same name made later would clash."""
        self._engine_networks &= known
        self._links_applied = {k: v for k, v in self._links_applied.items() if k in known}
        leftover: set[str] = set()
        for net in client.networks(filters={"label": LABEL_NETWORK_ID}):
            nid = (net.get("Labels") or {}).get(LABEL_NETWORK_ID)
            if nid in known:
                continue
            try:
                client.remove_network(net["Id"])
            except NotFound:
                continue
            except APIError as exc:
                if nid not in self.leftover:
                    log.info("network %s removed from the swarm but still in use here (its "
                             "containers are stopping); trying again: %s", net["Name"], exc)
                leftover.add(nid)
        self.leftover = leftover
