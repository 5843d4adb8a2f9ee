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
What is free is computed from the store (ipam.py), so nothing leaks: a task's address is free
once the task has ended, a node's when the node is removed. The networks, services and nodes
are read in each pass. The tasks are not (10,000 of them, on every pass of a fill, were 6 % of
the leader's CPU, issue 13): `TaskIndex` follows the task stream and keeps the addresses live
tasks hold and the tasks still waiting for theirs, and reads every task again only when it
starts and whenever the stream is lost. Everything a pass decides goes through Raft in one
transaction; a conflict (someone changed an object between the read and the write) just means
another pass.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Iterable

from ...store import (
    Endpoint,
    Network,
    NetworkAttachment,
    NetworkSpec,
    PortConfig,
    StoreError,
    Task,
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


def _waits_for_addresses(task: Task) -> bool:
    """A task the allocator owes addresses: it has none yet, wants some, and is still meant
    to run (a task that ended or was told to stop never gets any, as in Swarm)."""
    return (task.networks_attachments is None and not task.status.state.terminal
            and task.desired_state <= TaskState.RUNNING and wants_networks(task))


class TaskIndex:
    """What the allocator needs of the tasks, kept from the task stream rather than read from
    every task on every pass.

    `held[network_id]` counts the addresses (without their prefix) that live tasks hold on
    that network; `waiting` has the ids of the tasks still owed addresses, oldest first.
    `sync()` brings both up to the store's present state: from the events since the last call
    (the store publishes a transaction's events as it applies it, so after `sync()` the index
    and a read of the store agree, with no `await` between the two), or from every task on the
    first call and whenever the stream was lost (a slow consumer, a snapshot restored)."""

    def __init__(self, store) -> None:
        self.store = store
        self._follower = StoreFollower(store, "task", name="allocator task index")
        self._open = False
        self._holds: dict[str, tuple[tuple[str, str], ...]] = {}
        self.held: dict[str, dict[str, int]] = {}
        self.waiting: dict[str, None] = {}
        self.rebuilds = 0

    def close(self) -> None:
        self._follower.close()
        self._open = False

    def sync(self) -> None:
        if self._open:
            events = self._follower.poll()  # None: lost, and already watching again
        else:
            self._follower.open()
            self._open, events = True, None
        if events is None:
            self._holds.clear()
            self.held.clear()
            self.waiting.clear()
            self.rebuilds += 1
            for task in self.store.view().list("task"):
                self._note(task.id, task)
            return
        for event in events:
            self._note(event.obj.id, event.new)

    def _note(self, task_id: str, task: Task | None) -> None:
        """`task` as it now is (None: deleted)."""
        holds: tuple[tuple[str, str], ...] = ()
        if task is not None and task.networks_attachments and holds_addresses(task):
            holds = tuple((a.network_id, addr.split("/")[0])
                          for a in task.networks_attachments for addr in a.addresses)
        old = self._holds.get(task_id, ())
        if holds != old:
            self._count(old, -1)
            self._count(holds, 1)
            if holds:
                self._holds[task_id] = holds
            else:
                del self._holds[task_id]
        if task is not None and _waits_for_addresses(task):
            self.waiting[task_id] = None  # a task already waiting keeps its place
        else:
            self.waiting.pop(task_id, None)

    def _count(self, holds: Iterable[tuple[str, str]], delta: int) -> None:
        for network_id, addr in holds:
            on = self.held.setdefault(network_id, {})
            n = on.get(addr, 0) + delta
            if n > 0:
                on[addr] = n
            else:
                on.pop(addr, None)


class Allocator:
    def __init__(self, proposer: Proposer, *, debounce: float = 0.005) -> None:
        self.proposer = proposer
        self.store = proposer.store
        self.debounce = debounce
        self._cursors: dict[str, str] = {}
        self._warned: dict[str, float] = {}
        self.tasks = TaskIndex(self.store)
        self.passes = 0

    async def run(self) -> None:
        """The loop, for as long as this manager leads (a leader task: manager.py)."""
        follower = StoreFollower(self.store, ("network", "service", "task", "node"), name="allocator")
        try:
            await follower.repeat(self._pass_until_quiet, settle=self.debounce)
        finally:
            self.tasks.close()  # the next leadership reads every task again

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
        index = self.tasks
        index.sync()
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
        pools = self._pools(view, networks)  # each network's pool is made when first used

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

        full: set[str] = set()  # networks found full in this pass (nothing frees within it)
        # tasks of one service share their spec and endpoint objects (template_parts, the
        # interner): their networks are worked out once per pass
        networks_of: dict[tuple[int, int], list[str]] = {}
        for task_id in index.waiting:
            task = view.get_task(task_id)
            key = (id(task.spec), id(task.endpoint))
            wanted = networks_of.get(key)
            if wanted is None:
                wanted = networks_of[key] = task_network_ids(task, ingress_id)
            if any(n not in networks or n in full for n in wanted):
                continue  # its network was removed, is being made, or is full: a later pass
            attachments = []
            for n in wanted:
                try:
                    attachments.append(NetworkAttachment(network_id=n, addresses=[pools[n].cidr(self._take(pools, n))]))
                except ipam.IPAMError:  # stays unallocated (pending), as in Swarm
                    full.add(n)
                    self._warn_full(networks[n], f"task {task.id} (and any after it) waits for an address")
                    break
            if len(attachments) < len(wanted):
                continue
            updated = task.clone()
            updated.networks_attachments = attachments
            tx.update(updated)
            if len(tx) >= MAX_TX_OPS:
                return tx
        return tx

    def _pools(self, view: View, networks: dict[str, Network]) -> _Pools:
        return _Pools(networks, view.list("service"), self.tasks.held, self._cursors)

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


class _Pools(dict):
    """Network id -> its `AddressPool` for one pass, made when first asked for: a pass that
    gives out nothing on a network never adds up what is in use on it. The tasks' addresses
    are the index's live counts (nothing in a pass changes them); the rest is read from the
    network and the services."""

    def __init__(self, networks: dict[str, Network], services: list, held: dict[str, dict[str, int]],
                 cursors: dict[str, str]) -> None:
        super().__init__()
        self.networks, self.services, self.held, self.cursors = networks, services, held, cursors

    def __missing__(self, network_id: str) -> ipam.AddressPool:
        net = self.networks[network_id]
        if not net.subnet:
            raise KeyError(network_id)
        used = [net.gateway, *net.node_addresses.values(),
                *(str(a) for block in net.node_ranges.values() for a in ipaddress.ip_network(block))]
        used += [vip.addr for svc in self.services if svc.endpoint
                 for vip in svc.endpoint.virtual_ips or [] if vip.network_id == network_id]
        pool = self[network_id] = ipam.AddressPool(
            ipam.parse_subnet(net.subnet), used, self.cursors.get(network_id),
            held=self.held.setdefault(network_id, {}))
        return pool
