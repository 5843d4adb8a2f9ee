"""Who is on the other end of a TLS connection, read from the certificate the CA gave it.

Swarm's authorization is certificate based: the CA writes the node ID into CN, the role into OU
and the cluster ID into O, and every RPC handler decides from those fields alone. Nothing the
peer says in a request body can change its role; only a new certificate can, and only the CA
issues those. That is why a worker that learns a manager's address still cannot send it Raft
messages: its certificate says "swarm-worker".
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .errors import InvalidCertificateError, PermissionDeniedError
from .sslfacts import CertDict, subject_values

if TYPE_CHECKING:
    from cryptography import x509

# `cryptography` is imported where a certificate object has to be parsed (the manager's
# checks of DER from its peers), not here: a worker reads identities from `ssl`'s decoded
# certificates (`ca.sslfacts`) and never loads it.


class CertRole(StrEnum):
    """The OU values. MANAGER and WORKER are Swarm's own strings.

    CLIENT is ours: Swarm has no operator certificates (the Docker daemon's TLS is separate),
    but here the Docker-compatible API is served by the cluster CA. Giving the operator a manager
    certificate would let the CLI's key talk Raft; a distinct role lets the API accept it while
    node-to-node RPC refuses it.
    """

    MANAGER = "swarm-manager"
    WORKER = "swarm-worker"
    CLIENT = "swarm-client"
    API_SERVER = "swarm-api-server"
    """Ours too: the certificate a manager serves the Docker API with while auto-lock seals its
    node key (see `ca.keyfile`). Server auth only, and a role that no check accepts, so its
    key, which stays readable on disk like dockerd's --tlskey, opens nothing."""


_ROLE_NAMES = frozenset(r.value for r in CertRole)


NODE_ROLES = frozenset({CertRole.MANAGER, CertRole.WORKER})

NODE_ID_LENGTH = 25
_NODE_ID_ALPHABET = frozenset("0123456789abcdefghijklmnopqrstuvwxyz")


def is_reserved_name(name: str, own_node_id: str | None = None) -> bool:
    """Whether a DNS name must never be a certificate's *address* SAN.

    Node certificates name their node and role as DNS SANs (`authority.issue_node_certificate`)
    so that clients can check "is this a manager" or "is this node X" by hostname. A role
    name, or anything shaped like a node ID (25 lowercase base36 characters, as `store.ids`
    makes them) other than the certificate's own, would let a node pass for another role or
    node; case and a trailing dot are ignored, as DNS ignores them.
    """
    n = name.lower().rstrip(".")
    if n in _ROLE_NAMES:
        return True
    looks_like_id = len(n) == NODE_ID_LENGTH and set(n) <= _NODE_ID_ALPHABET
    return looks_like_id and n != own_node_id


def address_names(names: Iterable[str], node_id: str) -> list[str]:
    """`names` without the reserved ones (see `is_reserved_name`): a certificate's address SANs."""
    return [n for n in names if n and not is_reserved_name(n, node_id) and n.lower().rstrip(".") != node_id]


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    node_id: str
    role: CertRole
    cluster_id: str

    @property
    def is_manager(self) -> bool:
        return self.role is CertRole.MANAGER


def _single_attribute(values: list[Any], label: str) -> str:
    if len(values) != 1:
        # Two OUs would make "which role is it?" ambiguous; a cert we issued never has that.
        raise InvalidCertificateError(
            f"certificate subject must have exactly one {label}, found {len(values)}"
        )
    value = values[0]
    if not isinstance(value, str) or not value:
        raise InvalidCertificateError(f"certificate subject has an empty {label}")
    return value


_SUBJECT = (("commonName", "common name (node ID)"),
            ("organizationalUnitName", "organizational unit (role)"),
            ("organizationName", "organization (cluster ID)"))


def _subject_fields(cert: bytes | str | x509.Certificate | CertDict) -> list[list[Any]]:
    """CN, OU and O values of the subject, from `ssl`'s decoded dict or from `cryptography`."""
    if isinstance(cert, dict):
        return [subject_values(cert, name) for name, _ in _SUBJECT]
    from cryptography.x509.oid import NameOID

    from .certs import load_certificate

    subject = load_certificate(cert).subject
    return [[a.value for a in subject.get_attributes_for_oid(oid)]
            for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.ORGANIZATION_NAME)]


def identity_from_cert(cert: bytes | str | x509.Certificate | CertDict) -> NodeIdentity:
    """Read the identity; raises InvalidCertificateError if the subject is not a swarm one.

    `cert`: PEM or DER bytes, a `cryptography` certificate, or `ssl`'s decoded dict (a verified
    peer's `getpeercert()`, `PeerInfo.peercert`, `sslfacts.decode`), which needs no
    `cryptography`. This does not check the signature: call it on certificates the TLS layer
    already verified against the cluster CA (a peer cert after a mutual TLS handshake), or on
    your own cert.
    """
    node_id, ou, cluster_id = (_single_attribute(values, label)
                               for values, (_, label) in zip(_subject_fields(cert), _SUBJECT, strict=True))
    try:
        role = CertRole(ou)
    except ValueError:
        raise InvalidCertificateError(f"certificate has unknown role {ou!r}") from None
    return NodeIdentity(node_id=node_id, role=role, cluster_id=cluster_id)


def peer_identity(conn: Any) -> NodeIdentity:
    """The verified peer's identity from an `ssl.SSLSocket`, `ssl.SSLObject` or an asyncio
    transport (`writer.transport`), which is what RPC handlers have in hand."""
    ssl_object = conn
    if not isinstance(conn, ssl.SSLSocket | ssl.SSLObject):
        ssl_object = conn.get_extra_info("ssl_object")
    if ssl_object is None:
        raise PermissionDeniedError("connection is not TLS: no peer identity")
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise PermissionDeniedError("peer presented no certificate")
    return identity_from_cert(der)


def peer_cert(peer: Any) -> bytes | CertDict | None:
    """What to read a `PeerInfo`'s identity from: the dict `ssl` decoded when it verified the
    certificate (no `cryptography` needed), else the DER it was given (an unverified one)."""
    return getattr(peer, "peercert", None) or peer.cert


def authorize(
    identity: NodeIdentity,
    allowed_roles: Iterable[CertRole | str],
    cluster_id: str | None = None,
    action: str = "this call",
) -> None:
    """Raise PermissionDeniedError unless the caller's role is allowed (and, if given, it
    belongs to our cluster: a cert from a CA we trust for another reason must not get in)."""
    allowed = {CertRole(r) for r in allowed_roles}
    if cluster_id is not None and identity.cluster_id != cluster_id:
        raise PermissionDeniedError(
            f"node {identity.node_id} belongs to cluster {identity.cluster_id}, not {cluster_id}"
        )
    if identity.role not in allowed:
        need = " or ".join(sorted(allowed))
        raise PermissionDeniedError(
            f"node {identity.node_id} has role {identity.role}; {action} requires {need}"
        )


def require_manager_cert(
    der: bytes | CertDict | None, *, node_id: str | None = None, cluster_id: str | None = None
) -> NodeIdentity:
    """Check the certificate a *server* presented: a manager's (read from its subject, which
    only the CA writes), of `cluster_id` and node `node_id` when those are known.

    For every outbound node-to-node connection (issue 9, hole 2): the handshake proves only
    that the cluster CA signed the certificate, and it signs workers' too; hostname checking
    relies on SANs, which a joiner could once choose. Raises PermissionDeniedError.
    """
    if not der:
        raise PermissionDeniedError("the server presented no certificate")
    ident = identity_from_cert(der)
    if cluster_id is not None and ident.cluster_id != cluster_id:
        raise PermissionDeniedError(
            f"the server's certificate is for cluster {ident.cluster_id}, not {cluster_id}"
        )
    if ident.role is not CertRole.MANAGER:
        raise PermissionDeniedError(
            f"the server's certificate is node {ident.node_id}'s with role {ident.role}, "
            "not a manager's: refusing to talk to it as a manager"
        )
    if node_id is not None and ident.node_id != node_id:
        raise PermissionDeniedError(
            f"the server is manager {ident.node_id}, not the expected {node_id}"
        )
    return ident


def expect_manager(cluster_id: str | None = None):
    """A `verify_peer` for RPC clients that may talk to any manager of `cluster_id`."""

    def verify(peer: Any) -> None:
        require_manager_cert(peer_cert(peer), cluster_id=cluster_id)

    return verify
