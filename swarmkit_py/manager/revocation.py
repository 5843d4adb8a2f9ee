"""Rights that end before the certificate does: removed nodes and demoted managers.

Every authorization used to read only the certificate's role, so a removed node, or a
demoted manager, kept its rights until its certificate expired, 90 days later (issue 9, hole
5). Swarm's answer, copied here: the cluster object keeps a list of removed nodes
(`Cluster.blacklisted_certificates`, written in the same transaction as the node's deletion)
whose certificates are refused on every port, and manager-only operations check the node's
*current* role in the store, not only the one its certificate was issued with.

`Revocation` is the one place those rules live, used by
- the cluster port's admission (`admit`): a removed node's connection is refused at once;
- the Raft transport's inbound check and the manager-only RPCs (`manager_refusal`);
- the Docker API's per-request check (`api_verdict`);
and it closes, the moment the store says so, the connections a node already had open
(`run`): the Raft transport decides once per connection, so a demoted manager's live
connection must go for the new verdict to apply.

Where the store does not know a node yet (a manager still catching up, a join racing the
connection), nothing is refused on that account: only a removal or a role the store holds
takes rights away.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ..background import Background
from ..ca import CAError, CertRole, NodeIdentity, identity_from_cert
from ..rpc import PeerInfo, RpcServer
from ..store import DELETE, UPDATE, MemoryStore, Node, NodeRole
from ..store.follow import StoreFollower
from .admission import RAFT_NOT_MANAGER

log = logging.getLogger(__name__)


class Revocation:
    def __init__(self, store: MemoryStore, rpc: RpcServer | None = None) -> None:
        self.store = store
        self.rpc = rpc
        self._loop = Background("revocation", self.run)

    # -- checks ---------------------------------------------------------------------------

    def removed(self, node_id: str) -> bool:
        cluster = self.store.view().cluster()
        if cluster is None:
            return False
        entry = cluster.blacklisted_certificates.get(node_id)
        return entry is not None and (entry.expiry is None or entry.expiry > datetime.now(UTC))

    def refusal(self, ident: NodeIdentity) -> str | None:
        """Why this certificate has no rights at all any more, or None."""
        verdict = self.verdict(ident, manager_only=False)
        return verdict[1] if verdict else None

    def manager_refusal(self, ident: NodeIdentity) -> str | None:
        """Why this certificate may not act as a manager *now*, or None."""
        verdict = self.verdict(ident, manager_only=True)
        return verdict[1] if verdict else None

    def verdict(self, ident: NodeIdentity, *, manager_only: bool) -> tuple[str, str] | None:
        """(reason, message) of a refusal, or None: "revoked_certificate" for a removed node,
        and for manager-only rights "not_manager" (the certificate's role) or "demoted" (the
        store's)."""
        if ident.role is CertRole.CLIENT:
            return None  # operator bundles name no node
        if self.removed(ident.node_id):
            return "revoked_certificate", (
                f"node {ident.node_id} was removed from the swarm; its certificates are revoked "
                "(join again with a join token)"
            )
        if not manager_only:
            return None
        if ident.role is not CertRole.MANAGER:
            return "not_manager", f"node {ident.node_id} has role {ident.role}, not a manager's"
        node = self.store.view().get_node(ident.node_id)
        if node is not None and node.role != NodeRole.MANAGER:
            return "demoted", (
                f"node {ident.node_id} was demoted to {node.role}: its manager certificate no "
                "longer carries a manager's rights"
            )
        return None

    def admit(self, peer: PeerInfo) -> str | None:
        """For the cluster port's `ServerPolicy.admit`."""
        try:
            return self.refusal(identity_from_cert(peer.cert))
        except CAError as e:
            return f"unreadable certificate: {e}"

    def is_current_manager(self, peer: PeerInfo) -> bool:
        """For the Raft transport's inbound check (asked once per connection)."""
        if peer.cert is None:
            return False  # cannot happen: anonymous peers may not send raft.msg at all
        try:
            reason = self.manager_refusal(identity_from_cert(peer.cert))
        except CAError as e:
            reason = f"unreadable certificate: {e}"
        if reason is not None:
            log.warning("refusing raft messages from %s: %s", peer.address_str, reason)
            if self.rpc is not None:
                self.rpc.refused[RAFT_NOT_MANAGER] += 1
        return reason is None

    def api_verdict(self, ident: NodeIdentity) -> tuple[str, str] | None:
        """For the Docker API: client bundles and current managers only."""
        return self.verdict(ident, manager_only=True)

    # -- cutting live connections -----------------------------------------------------------

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def run(self) -> None:
        """Until cancelled: when a node is removed or demoted, close its connections to this
        manager, so that whatever it reconnects for is judged by the store's new word."""
        follower = StoreFollower(self.store, "node", actions=[UPDATE, DELETE], name="revocation")
        await follower.follow(lambda: None, self._on_node_event)

    def _on_node_event(self, event) -> None:
        old, new = event.old, event.new
        if not isinstance(old, Node):
            return
        if new is None:
            self._cut(old.id, None, "removed from the swarm")
        elif old.role == NodeRole.MANAGER and new.role != NodeRole.MANAGER:
            self._cut(old.id, CertRole.MANAGER, "demoted")

    def _cut(self, node_id: str, role: CertRole | None, why: str) -> None:
        if self.rpc is None:
            return

        def matches(peer: PeerInfo) -> bool:
            if peer.cert is None:
                return False
            try:
                ident = identity_from_cert(peer.cert)
            except CAError:
                return False
            return ident.node_id == node_id and (role is None or ident.role is role)

        closed = self.rpc.close_where(matches, f"node {node_id} {why}")
        if closed:
            log.info("node %s %s: closed %d of its connections", node_id, why, closed)
