"""The network map: what every node needs to run the overlay data plane, pushed on change.

Swarm spreads this through gossip (libnetwork's networkdb); here the leader already holds the
truth in its store, so its dispatcher computes one cluster-wide map and pushes it to every
session whenever it changes (debounced, compared by digest), and in full to a session that
opens. Every node needs it, not only the nodes running a service's tasks: the routing mesh
accepts a published port on every node.

Wire (notification ``dispatcher.netmap``)::

    {"seq": int,
     "nodes": {node_id: addr},                         # VXLAN tunnel endpoints
     "networks": [{"id", "name", "subnet", "gateway", "vni", "internal", "ingress",
                   "node_addresses": {node_id: ip}, "attachable",
                   "node_ranges": {node_id: cidr}}],
     "services": [{"id", "name", "mode": "vip"|"dnsrr", "vips": {network_id: ip},
                   "ports": [[published, target, protocol], ...]}],   # ingress ports
     "tasks": [{"id", "name", "service_id", "node_id", "up": bool,
                "addrs": {network_id: ip}, "aliases": {network_id: [name, ...]}}]}

A task is ``up`` (a backend of the mesh, its VIPs and DNS) while it is observed running, is
meant to keep running and its node is not Down: a task that dies, or whose node is declared
Down, leaves the backends with the next push. Tasks that hold addresses but are not up are
still listed, so their nodes keep forwarding entries for containers that are starting.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import msgpack

from ...proto import NETMAP
from ...store import NodeState, TaskState
from ...store.view import View
from ..allocator.needs import ingress_network
from ..controlapi.services import ingress_ports
from .push import StorePusher

log = logging.getLogger(__name__)

DEBOUNCE = 0.01


def _ip(cidr: str) -> str:
    return cidr.split("/")[0]


def build_netmap(view: View) -> dict[str, Any]:
    nodes = view.list("node")
    down = {n.id for n in nodes if n.status.state == NodeState.DOWN}
    services = {s.id: s for s in view.list("service")}
    out_services = []
    for s in services.values():
        ep = s.spec.endpoint_spec
        out_services.append({
            "id": s.id,
            "name": s.spec.name,
            "mode": "dnsrr" if ep is not None and ep.mode == "dnsrr" else "vip",
            "vips": {v.network_id: _ip(v.addr) for v in (s.endpoint.virtual_ips or [])}
            if s.endpoint else {},
            "ports": [[p.published_port, p.target_port, (p.protocol or "tcp").lower()]
                      for p in ingress_ports(s) if p.published_port and p.target_port],
        })
    tasks = []
    for t in view.list("task"):
        if not t.networks_attachments or not t.node_id or t.status.state.terminal:
            continue
        svc = services.get(t.service_id)
        aliases = {}
        for entry in t.spec.networks or []:
            if isinstance(entry, dict) and entry.get("Aliases"):
                aliases[entry.get("Target")] = list(entry["Aliases"])
        middle = t.slot if t.slot is not None else t.node_id
        tasks.append({
            "id": t.id,
            "name": f"{svc.spec.name if svc else (t.name or '').split('.')[0]}.{middle}.{t.id}",
            "service_id": t.service_id,
            "node_id": t.node_id,
            "up": t.status.state == TaskState.RUNNING and t.desired_state == TaskState.RUNNING
            and t.node_id not in down and svc is not None,
            "addrs": {a.network_id: _ip(a.addresses[0]) for a in t.networks_attachments
                      if a.addresses},
            "aliases": aliases,
        })
    ingress = ingress_network(view)
    return {
        "nodes": {n.id: n.status.addr for n in nodes if n.status.addr},
        "networks": [{
            "id": n.id, "name": n.spec.name, "subnet": n.subnet, "gateway": n.gateway,
            "vni": n.vni, "internal": n.spec.internal,
            "ingress": ingress is not None and n.id == ingress.id,
            "node_addresses": dict(n.node_addresses),
            "attachable": n.spec.attachable, "node_ranges": dict(n.node_ranges),
        } for n in view.list("network") if n.subnet],
        "services": out_services,
        "tasks": sorted(tasks, key=lambda t: t["id"]),
    }


def digest(netmap: dict[str, Any]) -> bytes:
    return hashlib.blake2b(msgpack.packb(netmap, use_bin_type=True), digest_size=16).digest()


class NetmapPusher(StorePusher):
    """``dispatcher`` supplies ``proposer.store``, ``session_node_ids()`` and
    ``push(node_id, method, params)``."""

    name = "netmap"
    kinds = ("network", "service", "task", "node")  # any change: rebuild the map

    def __init__(self, dispatcher: Any, *, debounce: float = DEBOUNCE) -> None:
        self._sent: dict[str, bytes] = {}
        self.last_change_pushed_at: float | None = None
        super().__init__(dispatcher, debounce=debounce)

    @property
    def debounce(self) -> float:
        """Longer as the cluster grows: every change (a node joining, a task starting) sends
        the whole map to every session, so at 1,000 nodes a burst of joins became 1,000 maps of
        ~100 KB per change (issue 13). Paced like heartbeats (the sessions over the rate the
        leader serves, ``max_heartbeat_rate``), a large cluster gets the map about once per
        heartbeat period; a small one within 10 ms as before."""
        rate = getattr(self._dispatcher, "max_heartbeat_rate", None)
        sessions = len(self._dispatcher.session_node_ids()) if rate else 0
        return max(self._debounce, sessions / rate) if rate else self._debounce

    @debounce.setter
    def debounce(self, value: float) -> None:
        self._debounce = value

    def _reset(self) -> None:
        self._sent.clear()

    def session_opened(self, node_id: str) -> None:
        self._sent.pop(node_id, None)
        self._wake.set()

    async def _flush(self) -> None:
        view = self._dispatcher.proposer.store.view()
        netmap = build_netmap(view)
        d = digest(netmap)
        params = {"seq": view.index, **netmap}
        sends = [(n, d, params) for n in self._dispatcher.session_node_ids() if self._sent.get(n) != d]
        if sends:
            await self._push(NETMAP, sends, self._sent)
