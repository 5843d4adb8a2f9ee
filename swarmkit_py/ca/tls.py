"""`ssl.SSLContext` builders for node-to-node traffic and the Docker-compatible API.

Mutual TLS with the cluster root as the only trust anchor: the system's public CAs are never
loaded, so a certificate bought from a public CA for some hostname is worth nothing here. The
server insists on a client certificate; after the handshake the RPC layer reads the peer's role
with `identity.peer_identity` and decides what it may call.

Hostname checking, and why it is on by default on the client side: our certificates name nodes,
not hosts (addresses change, node IDs do not), so each node certificate carries two DNS SANs,
its node ID and its role. A client therefore passes `server_hostname=` one of:

- a node ID, when it must reach exactly that node (a Raft peer): a different node, even a
  legitimate manager of the same cluster, is refused;
- `"swarm-manager"`, when any manager will do (join, dispatcher, CA renewal): a worker's
  certificate, though signed by the same CA, cannot pose as a manager.

The Docker CLI instead checks the address it dialled, so certificates served on the API port
need the host's IPs/DNS names as SANs too (`issue_node_certificate(ip_addresses=...)`).
`check_hostname=False` exists for callers that authorize by `peer_identity` after the handshake
instead; it still requires the peer to be signed by the cluster CA.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InvalidCertificateError

# Only `ssl` here (no `cryptography`): OpenSSL itself refuses garbage and a key that does not
# match its certificate, and every agent builds these contexts, a worker-only one included
# (see ca/sslfacts.py for why a worker does without `cryptography`).

MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2


def server_context(
    cert_pem: bytes | str, key_pem: bytes | str, ca_cert_pem: bytes | str
) -> ssl.SSLContext:
    """A server that only talks to peers holding a certificate from the cluster CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_trust(ctx, ca_cert_pem)
    _load_identity(ctx, cert_pem, key_pem)
    return ctx


def client_context(
    ca_cert_pem: bytes | str,
    cert_pem: bytes | str | None = None,
    key_pem: bytes | str | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A client that trusts only the cluster CA and presents its own node (or client) cert.

    Without cert/key it can still verify a server: that is how a joining node talks to a
    manager before it has a certificate, once the CA digest from the token has been checked.
    With `check_hostname` (the default) pass `server_hostname=<node ID>` or `"swarm-manager"`
    when connecting; see the module docstring.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_trust(ctx, ca_cert_pem)
    if (cert_pem is None) != (key_pem is None):
        raise ValueError("give both cert_pem and key_pem, or neither")
    if cert_pem is not None and key_pem is not None:
        _load_identity(ctx, cert_pem, key_pem)
    return ctx


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = MIN_TLS_VERSION
    # Compression enables CRIME-style leaks; renegotiation has no use between our own nodes.
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    # TLS 1.2 suites limited to forward-secret AEAD ones; TLS 1.3 suites are all fine.
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")


def _load_trust(ctx: ssl.SSLContext, ca_cert_pem: bytes | str) -> None:
    pem = ca_cert_pem.decode() if isinstance(ca_cert_pem, bytes) else ca_cert_pem
    try:
        ctx.load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        # a clear error for garbage, instead of OpenSSL's "no start line"
        raise InvalidCertificateError(f"cannot parse the CA certificate: {exc}") from None


def _load_identity(ctx: ssl.SSLContext, cert_pem: bytes | str, key_pem: bytes | str) -> None:
    from .sslfacts import pair_error

    why = pair_error(cert_pem, key_pem, ctx)
    if why is not None:
        raise InvalidCertificateError(why)


@contextlib.contextmanager
def _private_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can open, holding `data`, gone afterwards.

    `load_cert_chain` only takes file names. On Linux an anonymous memfd, opened through
    /proc/self/fd, keeps the key off every filesystem; elsewhere a 0700 temporary directory.
    """
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and Path("/proc/self/fd").is_dir():
        fd = memfd_create("swarmkit-py-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="swarmkit-py-tls-") as tmp:
        path = Path(tmp) / "material.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield str(path)
