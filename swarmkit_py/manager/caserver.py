"""The manager's certificate authority endpoint on port 2377: join, root CA, renewal.

Three RPC methods, one port, two trust levels (moby/swarmkit's `ca/server.go`):

`ca.root`   anonymous. Returns the root CA certificate (public). A joining node has no way
            to trust it yet; it compares its digest with the one in its join token.
`ca.join`   anonymous. Params `{token, csr, hostname, addr, availability?}`. The token is
            the credential: it is compared (constant time) with the cluster's *current*
            worker and manager tokens, which also decides the role. A match creates the Node
            object through the proposer (Raft) and returns a certificate with CN = the new
            node id, OU = the role, O = the cluster id.
`ca.renew`  mutual TLS. Re-issues the caller's certificate with the role the store has for
            that node *now*: this is how promote/demote reach the certificate (and therefore
            what the node may call). Params `{csr?}`: with a CSR the node gets a fresh key
            pair certified, without one its current public key is re-signed.

Anonymous callers are possible because the 2377 server context makes client certificates
optional but verified when presented (`ca.optional_tls.server_context_optional_client`);
every other handler on that port must therefore authorize explicitly, with `require_identity`.

Where the signing key lives: in the replicated Cluster object (`Cluster.root_ca.ca_key`), as
in Swarm, so whichever manager leads after a failover can sign without a key-distribution
step. The cost is that every manager's store, Raft log and snapshots hold the CA key: a
manager's disk is as sensitive as the key itself (Swarm's answer is autolock, i.e. encrypting
the Raft data at rest; not done here yet). Workers never see it: the field is internal (not on
the Docker API) and only managers hold a store.

Push hook for role changes: `CAServer.push_renew(node_id)` sends the `ca.renew_now`
notification down every live connection that node has open to this server (its dispatcher
session, in practice); the node's `worker.certs.CertRenewer.install_push_handler` turns it
into an immediate renewal. `CAServer.watch_role_changes()` calls it for every node whose role
changes in the store; run it next to the dispatcher (on the leader), where the sessions are.

Method names and error codes are in `swarmkit_py/proto` (`proto/ca.py`, `proto/codes.py`).
Error codes (`RpcError.code`), beyond the RPC layer's own:
`invalid_join_token`, `invalid_argument`, `unauthenticated`, `permission_denied`,
`not_found` (the node was removed), `failed_precondition` (no cluster, or this manager's CA
cannot sign), `unavailable` (the write could not be committed: retry, possibly elsewhere).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import random
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from cryptography import x509

from ..ca import (
    CAError,
    CertRole,
    InvalidCertificateError,
    InvalidCSRError,
    NodeIdentity,
    PermissionDeniedError,
    RootCA,
    authorize,
    identity_from_cert,
    load_certificate,
    role_for_token,
)
from ..ca.authority import MIN_NODE_CERT_VALIDITY, NODE_CERT_VALIDITY
from ..ca.identity import NODE_ROLES, address_names, is_reserved_name
from ..proto import (
    CA_JOIN,
    CA_RENEW,
    CA_RENEW_NOW,
    CA_ROOT,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    INVALID_JOIN_TOKEN,
    NOT_FOUND,
    PERMISSION_DENIED,
    UNAUTHENTICATED,
)
from ..raft.errors import RaftError
from ..rpc import UNAVAILABLE, PeerInfo, RpcError, RpcServer
from ..store import (
    UPDATE,
    Cluster,
    MemoryStore,
    Node,
    NodeAvailability,
    NodeCertificate,
    NodeDescription,
    NodeRole,
    NodeSpec,
    NodeState,
    NodeStatus,
    SequenceError,
    StoreError,
    Transaction,
    new_id,
)
from ..store.follow import StoreFollower
from .proposer import Proposer

log = logging.getLogger(__name__)

CERT_STATUS_ISSUED = "issued"
MAX_HOSTNAME = 253
MAX_CSR_BYTES = 16 * 1024
RENEW_WRITE_ATTEMPTS = 5

_NODE_TO_CA = {NodeRole.WORKER: CertRole.WORKER, NodeRole.MANAGER: CertRole.MANAGER}
_CA_TO_NODE = {v: k for k, v in _NODE_TO_CA.items()}


def ca_role(role: NodeRole | CertRole | str) -> CertRole:
    """The certificate OU for a store role ("manager" -> "swarm-manager"); idempotent."""
    if isinstance(role, CertRole):
        return role
    with contextlib.suppress(ValueError):
        return CertRole(role)
    return _NODE_TO_CA[NodeRole(role)]


def node_role(role: NodeRole | CertRole | str) -> NodeRole:
    """The store/API role for a certificate OU ("swarm-worker" -> "worker"); idempotent."""
    if isinstance(role, NodeRole):
        return role
    with contextlib.suppress(ValueError):
        return _CA_TO_NODE[CertRole(role)]
    return NodeRole(role)


def require_identity(
    peer: PeerInfo,
    roles: Iterable[CertRole | NodeRole | str],
    cluster_id: str | None = None,
    action: str = "this call",
) -> NodeIdentity:
    """The caller's identity if its certificate's role is one of `roles`, else an `RpcError`
    (`unauthenticated` without a certificate, `permission_denied` for the wrong role or
    cluster). For use at the top of every handler that is not anonymous.

    `peer.cert` is trusted as verified because the only server contexts we build (strict or
    optional-client) make OpenSSL fail the handshake on a certificate the cluster CA did not
    sign; a plain-TCP server has no certificate at all and is therefore refused here.
    Roles may be given as certificate roles (`CertRole.MANAGER`) or store roles ("manager").
    """
    if peer.cert is None:
        raise RpcError(
            UNAUTHENTICATED,
            f"{action} requires a certificate issued by the cluster CA; this connection "
            "presented none (only ca.root and ca.join are open to nodes that have not joined)",
        )
    try:
        ident = identity_from_cert(peer.cert)
        authorize(ident, {ca_role(r) for r in roles}, cluster_id=cluster_id, action=action)
    except (InvalidCertificateError, PermissionDeniedError) as exc:
        raise RpcError(PERMISSION_DENIED, str(exc)) from None
    return ident


class StoreRootCA:
    """Default `root_ca_loader`: the signing CA from the replicated Cluster object.

    Parsing a key and certificate costs about a millisecond; it is cached and re-done only
    when the stored PEMs change (a future root rotation), so every manager signs with what
    the store says *now*, whichever manager it is.
    """

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._cached: tuple[str, str | None, RootCA] | None = None

    def __call__(self) -> RootCA:
        cluster = self._store.view().cluster()
        if cluster is None or cluster.root_ca is None or not cluster.root_ca.ca_cert:
            raise RpcError(FAILED_PRECONDITION, "the swarm is not initialised: no root CA")
        cert, key = cluster.root_ca.ca_cert, cluster.root_ca.ca_key
        cached = self._cached
        if cached is not None and cached[0] == cert and cached[1] == key:
            return cached[2]
        root = RootCA.from_pem(cert, key)
        self._cached = (cert, key, root)
        return root


ManagersProvider = Callable[[], list[dict[str, str]]]


class CAServer:
    """Serves `ca.root`, `ca.join` and `ca.renew`; writes through a `Proposer`.

    `root_ca_loader` returns the CA to sign with (default: `StoreRootCA` over the proposer's
    store); `managers` returns `[{node_id, addr}]` for join answers (default: managers in the
    store with a known `ManagerStatus.Addr`). `rng` seeds node ids for reproducible tests.
    """

    def __init__(
        self,
        proposer: Proposer,
        root_ca_loader: Callable[[], RootCA] | None = None,
        *,
        managers: ManagersProvider | None = None,
        rng: random.Random | None = None,
        propose_timeout: float | None = 10.0,
    ) -> None:
        self.proposer = proposer
        self._root_ca = root_ca_loader or StoreRootCA(proposer.store)
        self._managers = managers or self._managers_from_store
        self._rng = rng
        self._propose_timeout = propose_timeout
        self._server: RpcServer | None = None

    @property
    def store(self) -> MemoryStore:
        return self.proposer.store

    def register(self, server: RpcServer) -> None:
        """Add the CA methods to `server` (port 2377). The server is remembered for pushes."""
        server.add_handler(CA_ROOT, self.handle_root)
        server.add_handler(CA_JOIN, self.handle_join)
        server.add_handler(CA_RENEW, self.handle_renew)
        self._server = server

    # -- ca.root --------------------------------------------------------------------------

    async def handle_root(self, peer: PeerInfo, params: Any) -> dict[str, str]:
        """`{}` -> `{ca_cert: PEM}`. Public data: nothing to authorize."""
        root = self._load_root()
        return {"ca_cert": root.cert_pem.decode()}

    # -- ca.join --------------------------------------------------------------------------

    async def handle_join(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        """`{token, csr, hostname, addr, availability?}` ->
        `{node_id, cert, ca_cert, role, cluster_id, managers: [{node_id, addr}]}`.

        The token is checked before anything else is parsed, so an anonymous caller without
        a valid token cannot make us parse CSRs or sign anything. Nothing is written unless
        the token matches, the CSR is valid and the certificate was issued; the certificate
        is returned only once the Node object is committed.
        """
        p = _require_dict(params, CA_JOIN)
        cluster = self._cluster()
        role = self._role_for(p.get("token"), cluster)
        csr = p.get("csr")
        if isinstance(csr, str):
            csr = csr.encode()
        if not isinstance(csr, bytes) or not csr or len(csr) > MAX_CSR_BYTES:
            raise RpcError(INVALID_ARGUMENT, "csr must be a PEM certificate signing request")
        hostname = p.get("hostname") or ""
        if not isinstance(hostname, str) or len(hostname) > MAX_HOSTNAME:
            raise RpcError(INVALID_ARGUMENT, f"hostname must be a string of at most {MAX_HOSTNAME} characters")
        availability = _availability(p.get("availability"))
        host = _advertised_host(p.get("addr"), peer)
        dns_names, ips = _sans_for(host)

        root = self._load_root()
        view = self.store.view()
        node_id = new_id(self._rng)
        while view.get_node(node_id) is not None:  # 129 random bits; but never reuse an id
            node_id = new_id(self._rng)
        try:
            issued = root.issue_node_certificate(
                csr,
                node_id,
                ca_role(role),
                cluster.id,
                dns_names=dns_names,
                ip_addresses=ips,
                validity=_node_cert_validity(cluster),
            )
        except InvalidCSRError as exc:
            raise RpcError(INVALID_ARGUMENT, str(exc)) from None
        except CAError as exc:
            raise RpcError(INVALID_ARGUMENT, f"cannot issue a certificate: {exc}") from None

        cert_pem = issued.cert_pem.decode()
        node = Node(
            id=node_id,
            spec=NodeSpec(role=role, availability=availability),
            role=role,
            description=NodeDescription(hostname=hostname or None),
            status=NodeStatus(state=NodeState.UNKNOWN, addr=host),
            certificate=_cert_record(node_id, role, cert_pem, csr.decode(errors="replace")),
        )
        await self._propose(Transaction().create(node), "record the new node")
        log.info("node %s (%s) joined as %s from %s", node_id, hostname, role, peer.address_str)
        return {
            "node_id": node_id,
            "cert": cert_pem,
            "ca_cert": issued.ca_cert_pem.decode(),
            "role": role.value,
            "cluster_id": cluster.id,
            "managers": self._managers(),
        }

    def _role_for(self, token: Any, cluster: Cluster) -> NodeRole:
        """Which role the presented token admits. Never echoes the token; says why in terms
        an operator can act on."""
        if not isinstance(token, str) or not token:
            raise RpcError(INVALID_JOIN_TOKEN, "invalid join token: no token given")
        current: dict[CertRole, str] = {}
        if cluster.join_tokens.worker:
            current[CertRole.WORKER] = cluster.join_tokens.worker
        if cluster.join_tokens.manager:
            current[CertRole.MANAGER] = cluster.join_tokens.manager
        try:
            matched = role_for_token(token, current)
        except CAError:
            # A stored token that does not parse is our bug, not the caller's; do not leak it.
            log.exception("the cluster's stored join tokens are malformed")
            raise RpcError(FAILED_PRECONDITION, "the cluster's join tokens are unusable") from None
        if matched is None:
            raise RpcError(
                INVALID_JOIN_TOKEN,
                "invalid join token: it matches neither the current worker nor the current "
                "manager token of this swarm (tokens may have been rotated; get the current "
                "one with `docker swarm join-token worker|manager`)",
            )
        return node_role(matched)

    # -- ca.renew -------------------------------------------------------------------------

    async def handle_renew(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        """`{csr?}` -> `{node_id, cert, ca_cert, role}`, for the certificate the caller
        presented. The role comes from the store, not from the old certificate, so a
        promotion or demotion takes effect at the first renewal after it.

        Read node, sign, write the certificate record with the version read: if the node
        changed in between (its role, say), the write fails with a sequence error and the
        whole thing is redone, so the role we sign is the role the store had when the
        record was committed.
        """
        p = _require_dict(params if params is not None else {}, CA_RENEW)
        cluster = self._cluster()
        ident = require_identity(peer, NODE_ROLES, cluster_id=cluster.id, action=CA_RENEW)
        csr = p.get("csr")
        if isinstance(csr, str):
            csr = csr.encode()
        if csr is not None and (not isinstance(csr, bytes) or len(csr) > MAX_CSR_BYTES):
            raise RpcError(INVALID_ARGUMENT, "csr must be a PEM certificate signing request")
        root = self._load_root()
        assert peer.cert is not None  # require_identity refused anonymous callers
        validity = _node_cert_validity(cluster)

        for _ in range(RENEW_WRITE_ATTEMPTS):
            node = self.store.view().get_node(ident.node_id)
            if node is None:
                raise RpcError(
                    NOT_FOUND,
                    f"node {ident.node_id} is not part of the swarm any more (it was removed); "
                    "it must leave and join again with a join token",
                )
            role = node_role(node.role or node.spec.role)
            try:
                if csr is not None:
                    dns, ips = _extra_sans(peer.cert)
                    issued = root.issue_node_certificate(
                        csr, ident.node_id, ca_role(role), cluster.id,
                        dns_names=dns, ip_addresses=ips, validity=validity,
                    )
                else:
                    issued = root.reissue(peer.cert, role=ca_role(role), validity=validity)
            except InvalidCSRError as exc:
                raise RpcError(INVALID_ARGUMENT, str(exc)) from None
            except CAError as exc:
                raise RpcError(FAILED_PRECONDITION, f"cannot renew: {exc}") from None
            cert_pem = issued.cert_pem.decode()
            updated = node.clone()
            updated.certificate = _cert_record(
                ident.node_id, role, cert_pem, csr.decode(errors="replace") if csr else None
            )
            try:
                await self._propose(Transaction().update(updated), "record the renewed certificate")
            except SequenceError:
                continue
            if role != node_role(ident.role):
                log.info("node %s certificate re-issued as %s (was %s)", ident.node_id, role, ident.role)
            return {
                "node_id": ident.node_id,
                "cert": cert_pem,
                "ca_cert": issued.ca_cert_pem.decode(),
                "role": role.value,
            }
        raise RpcError(
            UNAVAILABLE,
            f"node {ident.node_id} kept changing while its certificate was renewed; retry",
        )

    # -- push hook ------------------------------------------------------------------------

    async def push_renew(self, node_id: str) -> int:
        """Tell `node_id` to renew now, on every connection it has open to this server.

        Returns how many connections were told (0 if it has none here: it will still pick up
        the change at its next scheduled renewal, or when its dispatcher session reports the
        new role). Best effort: a connection that fails is skipped.
        """
        if self._server is None:
            return 0
        node = self.store.view().get_node(node_id)
        role = node_role(node.role or node.spec.role).value if node is not None else None
        sent = 0
        for conn in self._server.connections:
            cert = conn.peer.cert
            if cert is None or conn.is_closed:
                continue
            try:
                if identity_from_cert(cert).node_id != node_id:
                    continue
                await conn.notify(CA_RENEW_NOW, {"node_id": node_id, "role": role})
                sent += 1
            except (InvalidCertificateError, RpcError):
                continue
        return sent

    async def watch_role_changes(self) -> None:
        """Run until cancelled: push `ca.renew_now` to every node whose role in the store no
        longer matches its last issued certificate.

        After a lost watch (events dropped) the store is rescanned, so no change is missed.
        """
        follower = StoreFollower(self.store, "node", actions=[UPDATE], name="CA role watch")
        await follower.follow(self._renew_all_changed, self._on_node_update)

    async def session_opened(self, node_id: str) -> None:
        """A dispatcher session listener: a node whose role changed gets the push again when
        it opens a session. The push sent at the change can find no connection to use: a
        demotion makes `manager.revocation` close the node's connections in the same instant,
        and the node's new session arrives after the push went nowhere; without this the
        demoted agent stayed a manager until its next scheduled renewal, weeks later."""
        node = self.store.view().get_node(node_id)
        if node is not None and _needs_reissue(node):
            await self.push_renew(node_id)

    async def _renew_all_changed(self) -> None:
        for node in self.store.view().list("node"):
            if _needs_reissue(node):
                await self.push_renew(node.id)

    async def _on_node_update(self, event) -> None:
        node = event.new
        if isinstance(node, Node) and _needs_reissue(node):
            await self.push_renew(node.id)

    # -- helpers --------------------------------------------------------------------------

    def _cluster(self) -> Cluster:
        cluster = self.store.view().cluster()
        if cluster is None:
            raise RpcError(FAILED_PRECONDITION, "the swarm is not initialised: no cluster object")
        return cluster

    def _load_root(self) -> RootCA:
        try:
            root = self._root_ca()
        except CAError as exc:
            raise RpcError(FAILED_PRECONDITION, f"the cluster's root CA is unusable: {exc}") from None
        if not root.can_sign:
            raise RpcError(
                FAILED_PRECONDITION, "this manager's root CA has no private key; it cannot sign"
            )
        return root

    async def _propose(self, tx: Transaction, what: str) -> None:
        try:
            await self.proposer.propose(tx, timeout=self._propose_timeout)
        except SequenceError:
            raise  # the caller re-reads and retries
        except StoreError as exc:
            raise RpcError(INVALID_ARGUMENT, f"cannot {what}: {exc}") from None
        except (RaftError, TimeoutError) as exc:
            # Not committed (or outcome unknown): the caller may retry, here or elsewhere.
            raise RpcError(UNAVAILABLE, f"cannot {what}: {exc}") from None

    def _managers_from_store(self) -> list[dict[str, str]]:
        out = []
        for node in self.store.view().nodes():
            if node.role == NodeRole.MANAGER and node.manager_status and node.manager_status.addr:
                out.append({"node_id": node.id, "addr": node.manager_status.addr})
        return out


def _needs_reissue(node: Node) -> bool:
    want = node_role(node.role or node.spec.role)
    if node.certificate is None or node.certificate.role is None:
        # No record: the founding manager, whose certificate `init` made before the store
        # existed. It holds a manager's; once demoted it must be told too (it was not: a
        # demoted founder kept its manager certificate until its renewal, months later).
        return want != NodeRole.MANAGER
    return want != node.certificate.role


def _cert_record(node_id: str, role: NodeRole, cert_pem: str, csr: str | None) -> NodeCertificate:
    return NodeCertificate(
        role=role, csr=csr, status=CERT_STATUS_ISSUED, certificate=cert_pem, cn=node_id
    )


def _require_dict(params: Any, method: str) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise RpcError(INVALID_ARGUMENT, f"{method} expects a map of parameters")
    return params


def _availability(value: Any) -> NodeAvailability:
    if value is None or value == "":
        return NodeAvailability.ACTIVE
    try:
        return NodeAvailability(value)
    except ValueError:
        allowed = ", ".join(a.value for a in NodeAvailability)
        raise RpcError(INVALID_ARGUMENT, f"availability must be one of {allowed}") from None


def _advertised_host(addr: Any, peer: PeerInfo) -> str:
    """The host part of the advertised address; the address we see the caller on when it
    gave none (as Swarm does)."""
    if addr is None or addr == "":
        if peer.address is None:
            raise RpcError(INVALID_ARGUMENT, "addr is required: the caller's address is unknown")
        return peer.address[0]
    if not isinstance(addr, str) or len(addr) > MAX_HOSTNAME + 8:
        raise RpcError(INVALID_ARGUMENT, "addr must be a host or host:port string")
    host = addr
    if addr.startswith("["):  # [v6]:port
        host = addr[1:].split("]", 1)[0]
    elif addr.count(":") == 1:
        host = addr.split(":", 1)[0]
    if not host:
        raise RpcError(INVALID_ARGUMENT, f"addr {addr!r} has no host part")
    return host


def _sans_for(host: str) -> tuple[list[str], list[str]]:
    try:
        return [], [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if not all(0 < len(lb) <= 63 and lb.replace("-", "").isalnum() for lb in labels):
        raise RpcError(INVALID_ARGUMENT, f"addr host {host!r} is neither an IP address nor a DNS name")
    if is_reserved_name(host):
        # Certificates name roles and node ids as DNS SANs; a joiner choosing one would pass
        # for a manager (or for that node) in a hostname check (issue 9, hole 4).
        raise RpcError(
            INVALID_ARGUMENT,
            f"addr host {host!r} is reserved: certificates use role names and node IDs to say "
            "who a node is; advertise this node's IP address or its own DNS name",
        )
    return [host.lower().rstrip(".")], []


def _extra_sans(cert_der: bytes) -> tuple[list[str], list[str]]:
    """The address SANs of a certificate (not its node-id/role names, which are re-derived)."""
    cert = load_certificate(cert_der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    ident = identity_from_cert(cert)
    dns = address_names(san.get_values_for_type(x509.DNSName), ident.node_id)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def _node_cert_validity(cluster: Cluster) -> timedelta:
    """`docker swarm update --cert-expiry` (nanoseconds in ClusterSpec.CAConfig), if set and
    sane; Swarm's 90 days otherwise."""
    ca_config = cluster.spec.ca_config
    if ca_config is not None and ca_config.node_cert_expiry:
        validity = timedelta(microseconds=ca_config.node_cert_expiry / 1000)
        if validity >= MIN_NODE_CERT_VALIDITY:
            return validity
        log.warning("ignoring cert expiry %s: shorter than %s", validity, MIN_NODE_CERT_VALIDITY)
    return NODE_CERT_VALIDITY
