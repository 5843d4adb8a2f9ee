"""Networks in the control API: create, list, inspect, remove, prune (swarm scope only).

Only the `overlay` driver exists in a swarm; a local driver (`bridge`, `macvlan`...) is the
engine's business, so it is refused with a pointer to `-d overlay` rather than stored and
ignored. The subnet and the VXLAN id are allocated here, in the create transaction, so an
overlapping `--subnet` is refused to the user who asked; the transaction also rewrites the
cluster object at the version it read, so two creates racing through different managers
cannot both take the same subnet (the second fails with "update out of sequence", as
concurrent role changes do). Task addresses and per-node addresses are the allocator's
(manager/allocator), which runs on the leader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ...store import (
    AlreadyExists,
    IPAMConfig,
    Network,
    NetworkSpec,
    NotFound,
    TaskState,
    Transaction,
    new_id,
)
from ..allocator import ipam
from ..allocator.needs import network_users
from .errors import FailedPrecondition, InvalidArgument, describe_validation
from .filters import labels_match, parse_labels, validate_filters

NETWORK_FILTERS = frozenset({"driver", "id", "label", "name", "scope", "type", "dangling"})
LOCAL_DRIVERS = frozenset({"bridge", "host", "macvlan", "ipvlan", "null", "none"})
KNOWN_OPTIONS = frozenset({"com.docker.network.driver.mtu"})
_CREATE_KEYS = frozenset({
    "name", "checkduplicate", "driver", "scope", "internal", "attachable", "ingress", "ipam",
    "enableipv6", "options", "labels", "configonly", "configfrom",
})


class NetworkNotFound(NotFound):
    """dockerd's wording for drivers it has no plugin for (404)."""


class NetworkMethods:
    """Mixed into ControlAPI, which provides `store`, `ctx`, `_swarm_view` and `_read_view`."""

    async def create_network(self, body: Any) -> Network:
        if not isinstance(body, Mapping):
            raise InvalidArgument("invalid network config: expected a JSON object", plain=True)
        spec = parse_network_create(body)
        view = self._swarm_view()
        if view.find("network", name=spec.name):
            raise AlreadyExists(f"network with name {spec.name} already exists")
        if spec.ingress and any(n.spec.ingress for n in view.list("network")):
            raise FailedPrecondition(
                "there is already an ingress network; remove it first (docker network rm "
                "ingress) if you want to recreate it with other settings")
        network = allocate_network(view.list("network"), spec, new_id())
        cluster = view.cluster()
        tx = Transaction().create(network)
        if cluster is not None:
            tx.update(cluster.clone())
        result = await self.ctx.proposer.propose(tx)
        return next((o for o in result.objects if o.kind == "network"), network)

    async def list_networks(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[Network]:
        where = network_filter(filters, self.store.view())
        networks = (await self._read_view()).list("network")
        return [n for n in networks if where(n)] if where else networks

    async def get_network(self, ref: str) -> Network:
        return (await self._read_view()).lookup("network", ref)

    async def remove_network(self, ref: str) -> None:
        view = self._swarm_view()
        network: Network = view.lookup("network", ref)
        users = network_users(view, network)
        if users:
            raise FailedPrecondition(
                f"network {network.spec.name} is in use by service {', '.join(users)}: "
                "remove the service or update it with --network-rm first")
        live = tasks_holding(view, network)
        if live:
            raise FailedPrecondition(
                f"network {network.spec.name} is in use by task {live[0].name or live[0].id}: "
                "wait until it has stopped")
        await self.ctx.proposer.propose(Transaction().delete("network", network.id))

    async def prune_networks(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[str]:
        f = validate_filters(filters, frozenset({"label", "until"}))
        if f.get("until"):
            raise InvalidArgument("the 'until' filter is not supported for swarm networks",
                                  plain=True)
        labels = parse_labels(f.get("label", []))
        view = self._swarm_view()
        doomed = [n for n in view.list("network")
                  if not n.spec.ingress and not network_users(view, n)
                  and labels_match(n.spec.labels, labels) and not tasks_holding(view, n)]
        if not doomed:
            return []
        tx = Transaction()
        for n in doomed:
            tx.delete("network", n.id)
        await self.ctx.proposer.propose(tx)
        return [n.spec.name for n in doomed]

    def resolve_networks(self, entries: list[dict] | None) -> list[dict] | None:
        """Service specs name networks by name or ID; stored specs hold IDs (as dockerd
        resolves them before swarmkit sees the spec)."""
        if not entries:
            return entries
        view = self._swarm_view()
        out = []
        for entry in entries:
            target = entry.get("Target") if isinstance(entry, dict) else None
            if not isinstance(target, str) or not target:
                raise InvalidArgument("TaskSpec: each network needs a Target (name or ID)")
            network: Network = view.lookup("network", target)
            if network.spec.ingress:
                raise InvalidArgument(
                    "service cannot be explicitly attached to the ingress network "
                    f"{network.spec.name!r}: publish a port instead (-p)")
            out.append({**entry, "Target": network.id})
        return out


def tasks_holding(view: Any, network: Network) -> list[Any]:
    """Tasks that still hold the network: meant to run and not past running. As in Swarm, a
    task told to stop (desired state beyond running) no longer does, and neither does one whose
    service was deleted (the orchestrator is about to tell it to): its node takes its endpoint
    down and the network after it, when the container is gone. So `docker stack rm`, which
    removes the services and then at once the networks, removes them on the first try."""
    return [t for t in view.list("task")
            if t.desired_state <= TaskState.RUNNING and t.status.state <= TaskState.RUNNING
            and view.get_service(t.service_id) is not None
            and any(a.network_id == network.id for a in t.networks_attachments or [])]


def parse_network_create(body: Mapping[str, Any]) -> NetworkSpec:
    raw = {str(k).lower(): v for k, v in body.items()}
    unknown = sorted(set(raw) - _CREATE_KEYS)
    if unknown:
        raise InvalidArgument(f"invalid network config: unknown field {unknown[0]}", plain=True)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("network name is required: docker network create -d overlay NAME",
                              plain=True)
    driver = raw.get("driver") or "bridge"
    if driver in LOCAL_DRIVERS:
        raise InvalidArgument(
            f"driver {driver!r} is local to one engine; swarm networks use the overlay driver: "
            "docker network create -d overlay " + name)
    if driver != "overlay":
        raise NetworkNotFound(f'plugin "{driver}" not found: the swarm network driver is overlay')
    if raw.get("enableipv6"):
        raise InvalidArgument("IPv6 overlay networks are not supported: leave out --ipv6")
    if raw.get("configonly") or (raw.get("configfrom") or {}).get("Network"):
        raise InvalidArgument("config-only networks are not supported")
    options = raw.get("options") or {}
    if not isinstance(options, Mapping):
        raise InvalidArgument("Options must be a map of strings", plain=True)
    for key in options:
        if key == "encrypted":
            raise InvalidArgument("encrypted overlay networks are not supported: leave out "
                                  "--opt encrypted")
        if key not in KNOWN_OPTIONS:
            raise InvalidArgument(f"unknown network option {key!r} (known: "
                                  f"{', '.join(sorted(KNOWN_OPTIONS))})")
    ipam_body = raw.get("ipam") or {}
    if not isinstance(ipam_body, Mapping):
        raise InvalidArgument("IPAM must be an object", plain=True)
    ipam_raw = {str(k).lower(): v for k, v in ipam_body.items()}
    if ipam_raw.get("driver") not in (None, "", "default"):
        raise NetworkNotFound(f'plugin "{ipam_raw["driver"]}" not found: only the default '
                              "IPAM driver exists")
    configs = ipam_raw.get("config") or []
    if len(configs) > 1:
        raise InvalidArgument("only one subnet per network is supported")
    for c in configs:
        if not isinstance(c, Mapping) or \
                {str(k).lower() for k, v in c.items() if v} - {"subnet", "gateway"}:
            raise InvalidArgument("IPAM config supports Subnet and Gateway only "
                                  "(--ip-range and --aux-address are not supported)")
    try:
        return NetworkSpec(
            name=name, labels=raw.get("labels") or {}, driver="overlay",
            options=dict(options), attachable=bool(raw.get("attachable")),
            internal=bool(raw.get("internal")), ingress=bool(raw.get("ingress")),
            ipam=[IPAMConfig.model_validate({k: v for k, v in c.items() if v}) for c in configs],
        )
    except ValidationError as exc:
        raise InvalidArgument(f"invalid network config: {describe_validation(exc)}",
                              plain=True) from None


def allocate_network(existing: list[Network], spec: NetworkSpec, network_id: str) -> Network:
    try:
        return ipam.allocate_network(existing, spec, network_id)
    except ipam.IPAMError as exc:
        raise InvalidArgument(str(exc)) from None


def network_filter(filters: Mapping[str, Sequence[str]] | None, view: Any):
    f = validate_filters(filters, NETWORK_FILTERS)
    if not f:
        return None
    labels = parse_labels(f.get("label", []))
    for t in f.get("type", []):
        if t not in ("custom", "builtin"):
            raise InvalidArgument(f"Invalid filter: 'type'='{t}'", plain=True)
    wanted_dangling = set()
    for d in f.get("dangling", []):
        if d.lower() not in ("true", "1", "false", "0"):
            raise InvalidArgument(f"Invalid filter 'dangling=[{d}]'", plain=True)
        wanted_dangling.add(d.lower() in ("true", "1"))

    def match(n: Network) -> bool:
        if f.get("id") and not any(n.id.startswith(p) for p in f["id"]):
            return False
        if f.get("name") and not any(p in n.spec.name for p in f["name"]):
            return False
        if f.get("driver") and n.spec.driver not in f["driver"]:
            return False
        if f.get("scope") and "swarm" not in f["scope"]:
            return False
        if f.get("type") and ("builtin" if n.spec.ingress else "custom") not in f["type"]:
            return False
        if f.get("dangling"):
            dangling = not network_users(view, n)
            if dangling not in wanted_dangling:
                return False
        return labels_match(n.spec.labels, labels)

    return match


def network_json(network: Network) -> dict[str, Any]:
    """The engine API's network object (`docker network inspect`; note `Id`, not `ID`)."""
    options = {"com.docker.network.driver.overlay.vxlanid_list": str(network.vni)}
    options.update(network.spec.options)
    config: dict[str, Any] = {"Subnet": network.subnet, "Gateway": network.gateway}
    return {
        "Name": network.spec.name,
        "Id": network.id,
        "Created": network.to_api().get("CreatedAt", "0001-01-01T00:00:00Z"),
        "Scope": "swarm",
        "Driver": network.spec.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": [config]},
        "Internal": network.spec.internal,
        "Attachable": network.spec.attachable,
        "Ingress": network.spec.ingress,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": options,
        "Labels": network.spec.labels,
        "Peers": [],
    }
