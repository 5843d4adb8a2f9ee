"""The allocator: the leader loop that gives out network addresses (swarmkit's allocator).

It follows the store and, after each burst of changes, makes one pass over it:
- the `ingress` network exists (created when the cluster has no network yet, or when a
  service publishes an ingress port and there is none, as Swarm has one from `init`);
- every network has one address per node (the node's own endpoint: the routing mesh and
  virtual IPs masquerade to it so replies return through the balancing node), and an
  attachable one a block of 16 per node for the standalone containers its engine runs;
- every service has a virtual IP on each of its networks (endpoint mode `vip`, the default),
  and its ingress ports that asked for no published port get one from 30000-32767;
- every task that needs addresses gets one per network it is on (the scheduler places it only
  then; see needs.is_allocated).
What is free is computed from the store in each pass (ipam.py), so nothing leaks: a task's
address is free once the task has ended, a node's when the node is removed. Everything it
decides goes through Raft in one transaction per pass; a conflict (someone changed an object
between the read and the write) just means another pass.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time

from ...store import (
    Endpoint,
    Network,
    NetworkAttachment,
    NetworkSpec,
    PortConfig,
    StoreError,
    TaskState,
    Transaction,
    VirtualIP,
    new_id,
)
from ...store.follow import StoreFollower
from ...store.view import View
from ..proposer import Proposer
from . import ipam
from .needs import (
    has_ingress_ports,
    holds_addresses,
    ingress_network,
    service_network_ids,
    task_network_ids,
    wants_networks,
)

log = logging.getLogger("swarmkit_py.manager.allocator")

DYNAMIC_PORTS = range(30000, 32768)
RANGE_PREFIX = 28
"""Each node's block of an attachable network for standalone containers: 16 addresses."""
MAX_TX_OPS = 300


def _ingress_spec() -> NetworkSpec:
    return NetworkSpec(name=ipam.INGRESS_NAME, driver="overlay", ingress=True,
                       labels={}, ipam=[])


class Allocator:
    def __init__(self, proposer: Proposer, *, debounce: float = 0.005) -> None:
        self.proposer = proposer
        self.store = proposer.store
        self.debounce = debounce
        self._cursors: dict[str, str] = {}
        self._warned: dict[str, float] = {}
        self._settled: dict[str, int] = {}
        """Task id -> the stored version known to need no address."""
        self.passes = 0

    async def run(self) -> None:
        """The loop, for as long as this manager leads (a leader task: manager.py)."""
        follower = StoreFollower(self.store, ("network", "service", "task", "node"), name="allocator")
        await follower.repeat(self._pass_until_quiet, settle=self.debounce)

    async def _pass_until_quiet(self) -> None:
        delay = 0.05
        while True:
            try:
                tx = self.plan(self.store.view())
                if not len(tx):
                    return
                await self.proposer.propose(tx)
                self.passes += 1
                delay = 0.05
            except StoreError as exc:  # a concurrent change: read again
                log.debug("allocation conflict (%s); another pass", exc)
            except Exception as exc:  # lost leadership, no quorum: the loop is stopped soon
                log.warning("allocation failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- one pass -------------------------------------------------------------------------

    def plan(self, view: View) -> Transaction:
        """Everything missing, as one transaction (bounded; the next pass does the rest)."""
        tx = Transaction()
        networks = {n.id: n for n in view.list("network")}
        ingress = ingress_network(view)
        services = view.list("service")
        created: Network | None = None
        if ingress is None and (not networks or any(
                has_ingress_ports(s.spec.endpoint_spec) for s in services)):
            created = ingress = ipam.allocate_network(
                list(networks.values()), _ingress_spec(), new_id())
            networks[ingress.id] = ingress
        ingress_id = ingress.id if ingress is not None else None
        pools = self._pools(view, networks)

        nodes = {n.id: None for n in view.list("node")}  # ordered, and O(1) membership
        for net in networks.values():
            addrs = {k: v for k, v in net.node_addresses.items() if k in nodes}
            missing = [node_id for node_id in nodes if node_id not in addrs]
            short = 0
            for i, node_id in enumerate(missing):
                try:
                    addrs[node_id] = self._take(pools, net.id)
                except ipam.IPAMError:  # full (nothing is freed within a pass): the rest wait,
                    short = len(missing) - i  # the other networks and objects go on
                    break
            if short:
                self._warn_full(net, f"{short} node(s) have no address on it")
            ranges = {k: v for k, v in net.node_ranges.items() if k in nodes}
            if net.spec.attachable:
                for node_id in nodes:
                    if node_id not in ranges:
                        block = pools[net.id].reserve_block(RANGE_PREFIX)
                        if block is None:
                            log.warning("network %s: no free /%d left for node %s's standalone "
                                        "containers", net.spec.name, RANGE_PREFIX, node_id)
                            continue
                        ranges[node_id] = block
            if net is created:
                net.node_addresses = addrs
                tx.create(net)
            elif addrs != net.node_addresses or ranges != net.node_ranges:
                updated = net.clone()
                updated.node_addresses = addrs
                updated.node_ranges = ranges
                tx.update(updated)

        used_ports = {p.published_port for s in services if s.endpoint
                      for p in s.endpoint.ports or [] if p.published_port}
        for svc in services:
            try:
                endpoint = self._service_endpoint(svc, ingress_id, networks, pools, used_ports)
            except ipam.IPAMError as e:  # its virtual IPs wait, the rest goes on
                self._warn_full(None, f"service {svc.spec.name}: {e}")
                continue
            if endpoint != svc.endpoint:
                updated = svc.clone()
                updated.endpoint = endpoint
                tx.update(updated)
            if len(tx) >= MAX_TX_OPS:
                return tx

        settled = self._settled
        tasks = view.list("task")
        if len(settled) > 2 * len(tasks) + 1000:  # forget deleted tasks now and then
            settled = self._settled = {t.id: v for t in tasks if settled.get(t.id) == (v := t.version.index)}
        for task in tasks:
            if task.networks_attachments is not None or settled.get(task.id) == task.version.index:
                continue
            if not wants_networks(task):
                # a stored version never changes: this one never needs an address (every
                # pass looked at every task; during a 10,000-task fill that was most of the
                # allocator's 8 % of the leader's CPU, issue 13)
                settled[task.id] = task.version.index
                continue
            if task.status.state.terminal or task.desired_state > TaskState.RUNNING:
                continue
            wanted = task_network_ids(task, ingress_id)
            if any(n not in networks for n in wanted):
                continue  # its network was removed or ingress is being made: next pass
            try:
                attachments = [
                    NetworkAttachment(network_id=n, addresses=[pools[n].cidr(self._take(pools, n))])
                    for n in wanted
                ]
            except ipam.IPAMError as e:  # stays unallocated (pending), as in Swarm
                self._warn_full(None, f"task {task.id}: {e}")
                continue
            updated = task.clone()
            updated.networks_attachments = attachments
            tx.update(updated)
            if len(tx) >= MAX_TX_OPS:
                return tx
        return tx

    def _pools(self, view: View, networks: dict[str, Network]) -> dict[str, ipam.AddressPool]:
        used: dict[str, list[str]] = {
            nid: [n.gateway, *n.node_addresses.values(),
                  *(str(a) for block in n.node_ranges.values()
                    for a in ipaddress.ip_network(block))]
            for nid, n in networks.items()}
        for svc in view.list("service"):
            for vip in (svc.endpoint.virtual_ips or []) if svc.endpoint else []:
                used.setdefault(vip.network_id, []).append(vip.addr)
        for task in view.list("task"):
            if task.networks_attachments and holds_addresses(task):
                for a in task.networks_attachments:
                    used.setdefault(a.network_id, []).extend(a.addresses)
        return {nid: ipam.AddressPool(ipam.parse_subnet(n.subnet), used.get(nid, []),
                                      self._cursors.get(nid))
                for nid, n in networks.items() if n.subnet}

    def _warn_full(self, net: Network | None, what: str) -> None:
        """Once a minute per network at most: a full network is a standing condition."""
        key = net.id if net is not None else ""
        now = time.monotonic()
        if now - self._warned.get(key, -3600.0) < 60:
            return
        self._warned[key] = now
        name = f"network {net.spec.name} ({net.subnet}) is full: " if net is not None else ""
        log.warning("%s%s (remove what uses it or give it a larger --subnet)", name, what)

    def _take(self, pools: dict[str, ipam.AddressPool], network_id: str) -> str:
        addr = pools[network_id].allocate()
        self._cursors[network_id] = addr
        return addr

    def _service_endpoint(self, svc, ingress_id, networks, pools, used_ports) -> Endpoint | None:
        spec = svc.spec.endpoint_spec
        current = svc.endpoint
        wanted = [n for n in service_network_ids(svc, ingress_id) if n in networks]
        vips: list[VirtualIP] = []
        if spec is None or spec.mode in (None, "", "vip"):
            have = {v.network_id: v for v in (current.virtual_ips or [])} if current else {}
            for nid in wanted:
                vip = have.get(nid)
                if vip is None:
                    vip = VirtualIP(network_id=nid, addr=pools[nid].cidr(self._take(pools, nid)))
                vips.append(vip)
        ports: list[PortConfig] = []
        old_ports = (current.ports or []) if current else []
        for i, p in enumerate((spec.ports or []) if spec else []):
            port = p.model_copy(deep=True)
            port.publish_mode = (p.publish_mode or "ingress").lower()
            port.protocol = (p.protocol or "tcp").lower()
            if not port.published_port and port.publish_mode == "ingress":
                old = old_ports[i] if i < len(old_ports) else None
                if old is not None and old.target_port == p.target_port and old.published_port:
                    port.published_port = old.published_port
                else:
                    port.published_port = next(
                        (n for n in DYNAMIC_PORTS if n not in used_ports), None)
                    used_ports.add(port.published_port)
            ports.append(port)
        if spec is None and not vips:
            return None
        return Endpoint(spec=spec.model_copy(deep=True) if spec else None,
                        ports=ports or None, virtual_ips=vips or None)

