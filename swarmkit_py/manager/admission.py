"""Who gets in on the cluster port (2377), with which limits: the `rpc.ServerPolicy` of a node.

The RPC layer enforces; this module decides, because only here do certificates mean roles:

- limits by trust level (`rpc.limits`): no certificate -> `ANONYMOUS` (64 KiB frames, only
  `ca.root` and `ca.join`), a worker (or any non-manager) certificate -> `WORKER`, a manager
  certificate -> everything Raft needs (snapshots);
- admission of authenticated peers: `admit` is consulted for every new connection that
  presents a certificate (managers plug the revocation check of `manager.revocation` in).
"""

from __future__ import annotations

from collections.abc import Callable

from ..ca import CertRole, identity_from_cert
from ..ca.errors import CAError
from ..proto.ca import ANONYMOUS_METHODS
from ..rpc import ANONYMOUS, WORKER, DecodeLimits, PeerInfo, ServerPolicy, trusted_limits

MANAGER_LIMITS = trusted_limits()


def peer_limits(peer: PeerInfo) -> DecodeLimits:
    """The decode limits for a connection, from the certificate it presented (TLS verified it
    against the cluster CA before we get here)."""
    if peer.cert is None:
        return ANONYMOUS
    try:
        role = identity_from_cert(peer.cert).role
    except CAError:
        return ANONYMOUS
    return MANAGER_LIMITS if role is CertRole.MANAGER else WORKER


def cluster_port_policy(admit: Callable[[PeerInfo], str | None] | None = None) -> ServerPolicy:
    """The policy of every node's 2377 listener."""
    return ServerPolicy(limits_for=peer_limits, anonymous_methods=ANONYMOUS_METHODS, admit=admit)
