"""TLS contexts for the two ends of a join, where one side has no certificate yet.

Port 2377 carries both node-to-node RPC (Raft, dispatcher, renewals: mutual TLS) and the join
(a node that does not have a certificate yet, and cannot have one before it joins). One port
means one server context, so that context must let a certificate-less client finish the
handshake while still verifying any certificate a client does present:

- `server_context_optional_client`: `CERT_OPTIONAL`. A presented certificate that is not signed
  by the cluster CA (or expired) still fails the handshake, exactly as with `CERT_REQUIRED`;
  no certificate at all gets through with `PeerInfo.cert is None`. The *RPC handlers* then
  decide: `ca.root` and `ca.join` accept anonymous callers, everything else calls
  `manager.caserver.require_identity`, which refuses a missing certificate. This is what
  Swarm does too (its gRPC server uses `VerifyClientCertIfGiven`).
- `bootstrap_client_context`: the joining node's very first connection, before it knows the
  CA. It does not verify the server: it could not (no trust anchor yet). It is only used to
  fetch the public CA certificate, which the joiner then checks against the digest in its
  join token before anything secret (the token, the CSR) is sent; the token is sent later over
  a second connection verified against that CA (`tls.client_context`).

Kept in a module of its own so that `tls.py`'s contexts stay strict by default: anyone who
builds a server with `tls.server_context` still gets mandatory client certificates.
"""

from __future__ import annotations

import ssl

from .tls import MIN_TLS_VERSION, server_context


def server_context_optional_client(
    cert_pem: bytes | str, key_pem: bytes | str, ca_cert_pem: bytes | str
) -> ssl.SSLContext:
    """The manager's 2377 context: client certificate optional, verified if presented.

    Built on `tls.server_context` (same hardening, same single trust anchor) so the two can
    never drift apart in anything but the client-certificate requirement.
    """
    ctx = server_context(cert_pem, key_pem, ca_cert_pem)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def bootstrap_client_context() -> ssl.SSLContext:
    """An unverified client context, ONLY for fetching the root CA certificate before a join.

    Encryption without authentication: whatever the peer sends back must be treated as
    untrusted until `tokens.require_ca_digest` has accepted it. Never send a token, a CSR or
    any other secret over a connection made with this context.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MIN_TLS_VERSION
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.check_hostname = False  # must be cleared before verify_mode can be CERT_NONE
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
