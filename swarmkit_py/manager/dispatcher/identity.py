"""Who is opening a session: the pluggable answer to "which node is this caller?".

In a cluster the answer comes only from the TLS certificate the CA issued (its CN is the node
id, its OU the role): a worker cannot heartbeat on behalf of another node by writing a
different id in its request. Unit tests run without TLS, so the dispatcher takes the identity
function as a parameter and tests pass :func:`params_identity`, which believes the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ...ca.errors import CAError
from ...ca.identity import CertRole, authorize, identity_from_cert
from ...proto import INVALID_ARGUMENT, PERMISSION_DENIED
from ...rpc import PeerInfo, RpcError

Identify = Callable[[PeerInfo, Mapping[str, Any]], str]
"""``(peer, params) -> node_id``; raises RpcError(PERMISSION_DENIED | INVALID_ARGUMENT)."""


def cert_identity(cluster_id: str | None = None) -> Identify:
    """Identity from the peer's verified certificate; managers run a worker too, so both
    node roles may open sessions, while an operator's client certificate may not.

    A ``node_id`` in the params is tolerated only if it names the certificate's own node, so a
    misconfigured agent gets a clear refusal instead of silently acting as someone else.
    """

    def identify(peer: PeerInfo, params: Mapping[str, Any]) -> str:
        if peer.cert is None:
            raise RpcError(PERMISSION_DENIED, "a dispatcher session needs a node certificate")
        try:
            ident = identity_from_cert(peer.cert)
            authorize(ident, (CertRole.MANAGER, CertRole.WORKER), cluster_id, "a dispatcher session")
        except (CAError, PermissionError) as e:
            raise RpcError(PERMISSION_DENIED, str(e)) from None
        claimed = params.get("node_id")
        if claimed not in (None, "", ident.node_id):
            raise RpcError(
                PERMISSION_DENIED,
                f"certificate is for node {ident.node_id}, request claims {claimed}",
            )
        return ident.node_id

    return identify


def params_identity(peer: PeerInfo, params: Mapping[str, Any]) -> str:
    """Trust ``params["node_id"]``. For tests and loopback tools only, never a TLS listener."""
    node_id = params.get("node_id")
    if not isinstance(node_id, str) or not node_id:
        raise RpcError(INVALID_ARGUMENT, "node_id is required when identity comes from params")
    return node_id
