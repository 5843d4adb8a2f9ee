"""`ControlAPI`: the rules of Swarm's control API for nodes and the cluster, over the store.
Service and task methods are mixed in from `services.py` and `tasks.py`.

What lives here and why:
- Every write is one store `Transaction` proposed through `ctx.proposer` (forwarded to the
  leader). Every read is linearizable when a quorum can say so: `_read_view` first waits for
  a Raft read barrier (ReadIndex: the leader confirms with a majority that it still leads and
  names its commit index; this manager waits until it has applied that far), so a read never
  misses a write acknowledged before it began -- on a lagging follower, on a partitioned
  minority, or on a leader that was paused and does not know it was deposed (the nemesis
  suite found stale reads on followers within seconds; swarmkit answers from the leader's
  memory and has the deposed-leader window). When no quorum confirms within READ_WAIT_S (no
  leader, or this manager is cut off), the read is still answered, from the local copy, so
  `docker service ls` and `docker node ls` keep working while quorum is lost (issue 4; Swarm
  refuses them) -- and the answer says which it was in the `X-Swarmkit-Read` header,
  `linearizable` or `stale` (the request's `read_consistency`), as Consul and Nomad mark their
  stale reads. Clients that need linearizability (the nemesis suite's) honour the header.
- Optimistic concurrency is the store's: an update carries the version the client read, and a
  stale one is refused with "update out of sequence".
- Promote/demote only change `Spec.Role` (the desired role). The role manager control loop
  watches the store and performs the Raft membership change, as in swarmkit. This API is
  where the refusals live, because it is where a human gets an answer.
- Demotion and forced removal of a manager are checked against the live Raft membership
  (`ctx.raft_members()`): a change that would leave the remaining voters without a reachable
  majority is refused. Two such changes sent at once through different managers could each
  pass that check against the same membership, so their transactions also rewrite the cluster
  object at the version they read: the second one to commit fails with "update out of
  sequence" instead of silently breaking quorum. Within one manager a lock serialises them so
  the second sees the first's result and gets the precise refusal.
- Force-removing a down manager deletes its node object; the role manager removes Raft members
  whose node object is gone (swarmkit's "remove node => reconcile membership"). Tasks on a
  removed node are left to the orchestrators, which treat tasks on missing nodes as orphaned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from ...ca import NODE_CERT_VALIDITY, CAError, load_certificate
from ...raft.errors import NoQuorum, NotLeader, ProposalDropped
from ...raft.storage import format_unlock_key, new_key
from ...store import (
    BlacklistedCertificate,
    Cluster,
    JoinTokens,
    Node,
    NodeRole,
    NodeState,
    Transaction,
    Version,
)
from ..allocator.ipam import DATA_PATH_PORT, DEFAULT_POOL, DEFAULT_PREFIX
from ..context import ClusterContext, RaftMember
from .cluster import (
    SWARM_WIDE_RAFT_JSON,
    check_raft_settings,
    cluster_tls_info,
    parse_cluster_spec,
    rotated_token,
)
from .errors import FailedPrecondition, InvalidArgument, NotInSwarm
from .networks import NetworkMethods
from .nodes import actual_role, node_filter, parse_node_spec, with_manager_status
from .quorum import can_remove_member, member_for
from .secrets import SecretConfigMethods
from .services import ServiceMethods
from .tasks import TaskMethods

log = logging.getLogger(__name__)

NO_LEADER_MESSAGE = (
    "The swarm does not have a leader. It's possible that too few managers are online. "
    "Make sure more than half of the managers are online."
)
"""dockerd's wording (daemon/cluster errNoLeader), reused so operators' searches find it."""

READ_WAIT_S = 1.5
"""How long a read waits for a quorum to confirm it before answering from the local copy. With
a leader the barrier takes one heartbeat round (milliseconds); an election here takes well under
a second (50 ms ticks, election timeout 0.3-0.6 s)."""
LINEARIZABLE, STALE = "linearizable", "stale"
read_consistency: ContextVar[str | None] = ContextVar("read_consistency", default=None)
"""What the reads of the current request were: LINEARIZABLE, STALE, or None (it read nothing);
the API stamps it on the response as `X-Swarmkit-Read`."""

QUORUM_LOSS_MESSAGE = "can't remove member from the raft: this would result in a loss of quorum"
LAST_MANAGER_MESSAGE = "attempting to demote the last manager of the swarm"


class ControlAPI(ServiceMethods, TaskMethods, NetworkMethods, SecretConfigMethods):
    def __init__(self, ctx: ClusterContext) -> None:
        self.ctx = ctx
        self._role_lock = asyncio.Lock()

    # -- helpers ---------------------------------------------------------------------------

    @property
    def store(self):
        return self.ctx.proposer.store

    async def _read_view(self):
        """A store view that holds every write committed before the call, or the local one,
        marked stale, when no quorum confirms in time (see the module docstring);
        NotInSwarm when there is no swarm."""
        with self._read_section():
            in_swarm = self.store.view().cluster() is not None
        if not in_swarm:
            raise NotInSwarm()  # not in a swarm at all: say so without asking Raft
        consistency = await self._confirm_read()
        if read_consistency.get() != STALE:  # one stale part makes the whole answer stale
            read_consistency.set(consistency)
        return self.store.view()

    async def _confirm_read(self) -> str:
        """The read barrier: LINEARIZABLE once it passed, STALE when no quorum confirmed."""
        try:
            await self.ctx.read_barrier(timeout=READ_WAIT_S)
        except (NoQuorum, NotLeader, ProposalDropped):
            return STALE
        return LINEARIZABLE

    def _read_section(self):
        """What a read of the store holds: nothing on the event loop (apply runs there too);
        the store's commit lock on the API's front thread (`api/front.py`)."""
        return nullcontext()

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator:
        """`async with self._reading() as view:` the reads of one answer, after the barrier of
        `_read_view`, inside `_read_section`. The body must not await."""
        await self._read_view()
        with self._read_section():
            yield self.store.view()

    def _members(self) -> list[RaftMember]:
        return list(self.ctx.raft_members())

    @staticmethod
    def _check_version(version: Any) -> int:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise InvalidArgument(
                f"invalid version {version!r}: must be a non-negative integer", plain=True
            )
        return version

    async def _as_new_as(self, kind: str, ref: str, version: int):
        """The object an update of `ref` must be built from: at least as new as `version`, the
        one the client read (issue 9, hole 6).

        An update carries only what the client sends (a spec); the rest (PreviousSpec,
        UpdateStatus, a node's status, the cluster's CA and tokens) comes from the copy here.
        A follower that lags behind the manager the client read from would fill those in
        from an older object, and the leader's version check would pass, since the client's
        version is the current one. So a copy older than `version` waits for a read barrier
        (everything committed is applied here) and is read again.
        """
        obj = self.store.view().lookup(kind, ref)
        if obj.version.index < version:
            await self.ctx.read_barrier()
            obj = self.store.view().lookup(kind, ref)
        return obj

    # -- nodes -----------------------------------------------------------------------------

    async def list_nodes(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[Node]:
        """Nodes matching `filters` ({key: [values]}), with live ManagerStatus."""
        where = node_filter(filters)
        async with self._reading() as view:
            members = self._members()
            nodes = view.nodes(where=where) if where else view.list("node")
            return [with_manager_status(n, members) for n in nodes]

    async def get_node(self, ref: str) -> Node:
        """By ID, hostname or unique ID prefix (NotFound / Ambiguous otherwise)."""
        async with self._reading() as view:
            return with_manager_status(view.lookup("node", ref), self._members())

    async def update_node(self, ref: str, version: int, spec: Any) -> Node:
        """Replace the node's spec (labels, desired role, availability) as of `version`."""
        version = self._check_version(version)
        new_spec = parse_node_spec(spec)
        async with self._role_lock:
            node: Node = await self._as_new_as("node", ref, version)
            view = self.store.view()
            tx = Transaction()
            demoting = node.spec.role == NodeRole.MANAGER and new_spec.role == NodeRole.WORKER
            if demoting:
                self._check_demotion(view, node)
                self._guard_membership(view, tx)
            updated = node.model_copy(update={"spec": new_spec, "version": Version(index=version)})
            tx.update(updated)
            result = await self.ctx.proposer.propose(tx)
        if new_spec.role != node.spec.role:
            managers = self._desired_managers()
            if managers % 2 == 0:
                log.warning(
                    "node %s: desired managers now %d; an even number tolerates no more "
                    "failures than one fewer would",
                    node.id,
                    managers,
                )
        stored = next((o for o in result.objects if o.kind == "node" and o.id == node.id), updated)
        return with_manager_status(stored, self._members())

    async def transfer_leadership(self, ref: str | None = None) -> Node:
        """Make node `ref` (ID, hostname or prefix; None: the best other manager) the Raft
        leader, from any manager; returns the new leader's node once it leads. Used before
        restarting the leader's agent (rolling upgrade) so the cluster never waits for an
        election timeout."""
        target = None
        if ref:
            node: Node = self.store.view().lookup("node", ref)
            if actual_role(node) != NodeRole.MANAGER:
                raise FailedPrecondition(f"node {node.id} is not a manager: only a manager can lead")
            target = node.id
        try:
            leader = await self.ctx.transfer_leadership(target)
        except ValueError as e:
            raise FailedPrecondition(str(e)) from None
        return with_manager_status(self.store.view().lookup("node", leader), self._members())

    def _desired_managers(self) -> int:
        return self.store.view().count("node", role=NodeRole.MANAGER)

    def _check_demotion(self, view, node: Node) -> None:
        managers = view.nodes(role=NodeRole.MANAGER)
        if len(managers) == 1 and managers[0].id == node.id:
            raise FailedPrecondition(LAST_MANAGER_MESSAGE)
        if not can_remove_member(self._members(), node.id):
            raise FailedPrecondition(QUORUM_LOSS_MESSAGE)

    @staticmethod
    def _guard_membership(view, tx: Transaction) -> None:
        """Make concurrent membership-affecting writes conflict (see the module docstring)."""
        cluster = view.cluster()
        if cluster is not None:
            tx.update(cluster.clone())

    async def remove_node(self, ref: str, force: bool = False) -> None:
        """Delete a node from the swarm.

        - A manager that is a Raft member must be demoted first - unless `force` is given and
          its member is unreachable (a dead manager cannot be demoted); removing it must not
          cost the remaining managers their quorum.
        - A node whose status is ready needs `force`.
        """
        async with self._role_lock:
            view = self.store.view()
            node: Node = view.lookup("node", ref)
            members = self._members()
            member = member_for(members, node.id)
            tx = Transaction()
            if member is not None:
                if node.spec.role == NodeRole.MANAGER and not (force and not member.reachable):
                    raise FailedPrecondition(
                        f"node {node.id} is a cluster manager and is a member of the raft "
                        "cluster. It must be demoted to worker before removal"
                    )
                # Still a member (a down manager, or a demotion the role manager has not
                # carried out yet): its member goes when the node object goes.
                if not can_remove_member(members, node.id):
                    raise FailedPrecondition(QUORUM_LOSS_MESSAGE)
            if not force and node.status.state == NodeState.READY:
                raise FailedPrecondition(f"node {node.id} is not down and can't be removed")
            tx.delete("node", node.id)
            # Its certificates are refused from this commit on, on every port (issue 9, hole
            # 5). The cluster write at the version read also guards membership (see above).
            cluster = view.cluster()
            if cluster is not None:
                tx.update(blacklist(cluster, node))
            await self.ctx.proposer.propose(tx)

    # -- cluster ---------------------------------------------------------------------------

    async def get_cluster(self) -> Cluster:
        return (await self._read_view()).cluster()

    async def update_cluster(
        self,
        version: int,
        spec: Any,
        rotate_worker_token: bool = False,
        rotate_manager_token: bool = False,
        rotate_manager_unlock_key: bool = False,
    ) -> Cluster:
        """Replace the swarm spec as of `version`; optionally rotate one or both join tokens
        (new secret, same CA digest; the other token is left alone).

        Auto-lock as in swarmkit's UpdateCluster: turning it on creates an unlock key, turning
        it off erases it, and `rotate_manager_unlock_key` replaces it (a no-op while auto-lock
        is off). Every manager watches the cluster object and re-wraps its Raft data keys."""
        version = self._check_version(version)
        cluster = self._swarm_view().cluster()
        if cluster.version.index < version:  # see _as_new_as
            await self.ctx.read_barrier()
            cluster = self._swarm_view().cluster()
        new_spec = check_raft_settings(parse_cluster_spec(spec, cluster), self.raft_settings(),
                                       cluster.spec.raft)
        tokens = cluster.join_tokens
        if rotate_worker_token or rotate_manager_token:
            tokens = JoinTokens(
                worker=rotated_token(cluster) if rotate_worker_token else tokens.worker,
                manager=rotated_token(cluster) if rotate_manager_token else tokens.manager,
            )
        enc = new_spec.encryption_config
        unlock_key = None
        if enc is not None and enc.auto_lock_managers:
            unlock_key = cluster.unlock_key
            if not unlock_key or rotate_manager_unlock_key:
                unlock_key = format_unlock_key(new_key())
        updated = cluster.model_copy(
            update={
                "spec": new_spec,
                "join_tokens": tokens,
                "unlock_key": unlock_key,
                "version": Version(index=version),
            }
        )
        result = await self.ctx.proposer.propose(Transaction().update(updated))
        return next((o for o in result.objects if o.kind == "cluster"), updated)

    async def get_unlock_key(self) -> str:
        """The managers' unlock key, "" when auto-lock is off (GET /swarm/unlockkey)."""
        cluster = await self.get_cluster()
        return cluster.unlock_key or ""

    def raft_settings(self) -> dict[str, int] | None:
        """The Raft settings this manager runs with, as Docker's Spec.Raft (None if unknown)."""
        fn = getattr(self.ctx, "raft_settings", None)
        return fn() if fn is not None else None

    # -- info ------------------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        """The `Swarm` section of GET /info, as dockerd fills it for a manager."""
        view = self.store.view()
        cluster = view.cluster()
        if cluster is None:
            return {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": False,
                "Error": "",
                "RemoteManagers": None,
            }
        members = self._members()
        nodes = view.list("node")
        me = view.get_node(self.ctx.node_id)
        member_ids = {m.node_id for m in members if m.node_id}
        managers = sum(1 for n in nodes if n.id in member_ids or actual_role(n) == NodeRole.MANAGER)
        no_leader = self.ctx.leader_node_id() is None
        return {
            "NodeID": self.ctx.node_id,
            "NodeAddr": (me.status.addr if me is not None else None) or "",
            "LocalNodeState": "active",
            "ControlAvailable": True,
            "Error": NO_LEADER_MESSAGE if no_leader else "",
            "RemoteManagers": [{"NodeID": m.node_id, "Addr": m.addr} for m in members if m.voter],
            "Nodes": len(nodes),
            "Managers": managers,
            "Cluster": cluster_json(cluster, join_tokens=False, raft=self.raft_settings()),
        }


def blacklist(cluster: Cluster, node: Node) -> Cluster:
    """The cluster with `node`'s certificates revoked until the last one it was issued expires
    (90 days from now when unknown), and entries already past their expiry pruned."""
    now = datetime.now(UTC)
    expiry = now + NODE_CERT_VALIDITY
    pem = node.certificate.certificate if node.certificate is not None else None
    if pem:
        try:
            expiry = load_certificate(pem).not_valid_after_utc
        except CAError:
            pass
    updated = cluster.clone()
    updated.blacklisted_certificates = {
        nid: entry
        for nid, entry in cluster.blacklisted_certificates.items()
        if entry.expiry is None or entry.expiry > now
    }
    updated.blacklisted_certificates[node.id] = BlacklistedCertificate(expiry=expiry)
    return updated


def cluster_json(
    cluster: Cluster, *, join_tokens: bool, raft: dict[str, int] | None = None
) -> dict[str, Any]:
    """Docker's `Swarm` object (GET /swarm) or, without join tokens, `ClusterInfo` (/info);
    `raft`: the answering manager's live Raft settings, shown as Spec.Raft, with the
    swarm-wide ones the spec sets (every manager applies those). Settings the spec leaves unset
    are shown with the values in effect (certificate expiry, ForceRotate, the overlay address
    pool, subnet size and VXLAN port), as dockerd shows them."""
    out = cluster.to_api()
    spec = out.setdefault("Spec", {})
    if raft is not None:
        stored = spec.get("Raft", {})
        spec["Raft"] = {**raft, **{k: v for k, v in stored.items() if k in SWARM_WIDE_RAFT_JSON}}
    ca = spec.setdefault("CAConfig", {})
    ca.setdefault("NodeCertExpiry", int(NODE_CERT_VALIDITY.total_seconds()) * 10**9)
    ca.setdefault("ForceRotate", 0)
    spec.setdefault("TaskDefaults", {})
    spec.setdefault("EncryptionConfig", {}).setdefault("AutoLockManagers", False)
    tls = cluster_tls_info(cluster)
    if tls is not None:
        out["TLSInfo"] = tls
    out.setdefault("RootRotationInProgress", False)
    out.setdefault("DefaultAddrPool", [str(DEFAULT_POOL)])
    out.setdefault("SubnetSize", DEFAULT_PREFIX)
    out.setdefault("DataPathPort", DATA_PATH_PORT)
    if not join_tokens:
        out.pop("JoinTokens", None)
    return out
