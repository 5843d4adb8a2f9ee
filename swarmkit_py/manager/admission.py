"""Who gets in on the cluster port (2377), with which limits: the `rpc.ServerPolicy` of a node.

The RPC layer enforces; this module decides, because only here do certificates mean roles:

- limits by trust level (`rpc.limits`): no certificate -> `ANONYMOUS` (64 KiB frames, only
  `ca.root` and `ca.join`), a worker (or any non-manager) certificate -> `WORKER`, a manager
  certificate -> everything Raft needs (snapshots);
- admission of authenticated peers: `admit` is consulted for every new connection that
  presents a certificate (managers plug the revocation check of `manager.revocation` in);
- which refusals are counted (`REFUSAL_REASONS`, the `reason` label of the agent's
  ``swarmkit_trust_refusals_total``): the RPC layer's own (caps, limits, handshakes), the
  answers of handlers that refuse a caller (`COUNTED_CODES`), and the Raft transport's refusal
  of a peer that is not a current manager (counted by `manager.revocation`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..ca.errors import CAError
from ..ca.identity import CertRole, identity_from_cert, peer_cert
from ..proto.ca import ANONYMOUS_METHODS
from ..proto.codes import INVALID_JOIN_TOKEN, PERMISSION_DENIED, UNAUTHENTICATED
from ..rpc import ANONYMOUS, WORKER, DecodeLimits, PeerInfo, ServerPolicy, trusted_limits
from ..rpc.limits import REFUSAL_REASONS as RPC_REFUSALS

MANAGER_LIMITS = trusted_limits()

COUNTED_CODES = {
    PERMISSION_DENIED: "permission_denied",
    UNAUTHENTICATED: "permission_denied",
    INVALID_JOIN_TOKEN: "invalid_join_token",
}
RAFT_NOT_MANAGER = "raft_not_manager"

REFUSAL_REASONS: dict[str, str] = {
    **RPC_REFUSALS,
    "invalid_join_token": "answered: a join with a token that is not one of the cluster's",
    "permission_denied": "answered permission denied: a role check refused the caller "
                         "(a worker calling a manager-only method, a demoted manager)",
    RAFT_NOT_MANAGER: "Raft messages refused: the sender is not a current manager",
}

def peer_limits(peer: PeerInfo) -> DecodeLimits:
    """The decode limits for a connection, from the certificate it presented (TLS verified it
    against the cluster CA before we get here)."""
    if peer.cert is None:
        return ANONYMOUS
    try:
        role = identity_from_cert(peer_cert(peer)).role  # `ssl`'s dict: no `cryptography` on a worker
    except CAError:
        return ANONYMOUS
    return MANAGER_LIMITS if role is CertRole.MANAGER else WORKER


def cluster_port_policy(admit: Callable[[PeerInfo], str | None] | None = None) -> ServerPolicy:
    """The policy of every node's 2377 listener."""
    return ServerPolicy(limits_for=peer_limits, anonymous_methods=ANONYMOUS_METHODS, admit=admit,
                        counted_codes=COUNTED_CODES)
