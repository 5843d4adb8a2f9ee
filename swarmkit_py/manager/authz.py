"""Who is calling: the node identity in a verified TLS client certificate.

Parsing a certificate costs tens of microseconds and a Raft peer sends thousands of messages a
second over one connection, so identities are cached by the certificate's bytes.
"""

from __future__ import annotations

from functools import lru_cache

from ..ca import NodeIdentity, PermissionDeniedError, Role, authorize, identity_from_cert
from ..rpc import PeerInfo, RpcError

PERMISSION_DENIED = "permission_denied"
MANAGER_ROLES = frozenset({Role.MANAGER})
NODE_ROLES = frozenset({Role.MANAGER, Role.WORKER})


@lru_cache(maxsize=1024)
def _identity(der: bytes) -> NodeIdentity:
    return identity_from_cert(der)


def peer_identity(peer: PeerInfo) -> NodeIdentity | None:
    if peer.cert is None:
        return None
    try:
        return _identity(peer.cert)
    except Exception:
        return None


def require(peer: PeerInfo, roles=MANAGER_ROLES, action: str = "this call", cluster_id: str | None = None) -> NodeIdentity:
    """The caller's identity, or an RpcError the caller can read: who it is and what it lacks."""
    ident = peer_identity(peer)
    if ident is None:
        raise RpcError(PERMISSION_DENIED, f"{action} requires a client certificate issued by the cluster CA")
    try:
        authorize(ident, roles, cluster_id=cluster_id, action=action)
    except PermissionDeniedError as e:
        raise RpcError(PERMISSION_DENIED, str(e)) from None
    return ident
