"""The joining node's side of `swarmkit-py join --token T MANAGER:2377`.

The order of steps is the security argument, so it is spelled out:

1. Parse the token locally. A paste error is reported before any network traffic.
2. Connect with TLS but *without* verifying the manager (we have no trust anchor yet) and ask
   for `ca.root`. Nothing secret goes over this connection: the request has no parameters.
3. Check the CA certificate's digest against the one in the token. A mismatch (wrong address,
   wrong token, or a man in the middle) stops here with `CADigestMismatchError`; the token and
   the CSR were never sent, so an impostor learns nothing it could replay.
4. Reconnect, now verifying the server against that CA *and* that its certificate is a
   manager's: the SAN `"swarm-manager"` (hostname check) and the role the CA wrote in the
   subject (`ca.expect_manager`), which no requester can choose.
5. Send the token and a CSR for a key generated here; the key never leaves this host.
6. Check what came back (signed by that CA, for our key, carrying a node role) and save key,
   certificate and CA certificate atomically in the state directory, the key 0600.

Only step 5 needs `cryptography` (the standard library cannot make a key or a CSR); step 6
checks the answer through `ssl` (ca/sslfacts.py). `key_and_csr` lets a caller make the key
elsewhere: a worker's agent makes it in a child process (ca/newkey.py), so that it never
loads `cryptography` itself.

Every failure is a `JoinError` subclass (or `InvalidJoinTokenError` / `CADigestMismatchError`
from the CA package) with a message meant for the operator's terminal, and on every failure
the cluster is unchanged (the manager writes the node only after accepting token and CSR).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..ca.errors import (
    CADigestMismatchError,
    CAError,
    InvalidJoinTokenError,
)
from ..ca.files import (
    CERT_MODE,
    NODE_CERT_FILE,
    ROOT_CA_CERT_FILE,
    ensure_private_dir,
    save_node_credentials,
    write_atomic,
)
from ..ca.identity import NODE_ROLES, CertRole, expect_manager, identity_from_cert
from ..ca.optional_tls import bootstrap_client_context
from ..ca.sslfacts import certificate_der, verify_issued
from ..ca.tls import client_context
from ..proto import CA_JOIN, CA_ROOT
from ..rpc import RpcClient, RpcError, RpcUnavailable
from ..store import NodeRole

# Making the key and the CSR needs `cryptography`: imported where `make_key_and_csr` does it,
# not with this module, which the agent's renewer also imports (a worker's agent never loads
# `cryptography`: ca/sslfacts.py, ca/newkey.py).

DEFAULT_PORT = 2377
MANAGER_SERVER_NAME = CertRole.MANAGER.value
"""Verify the manager against this DNS SAN: every manager certificate has it, no worker's."""


__all__ = [
    "CADigestMismatchError",
    "InvalidJoinTokenError",
    "JoinError",
    "JoinRejectedError",
    "JoinResult",
    "ManagerAddr",
    "ManagerUnreachableError",
    "AlreadyJoinedError",
    "join",
    "parse_address",
]


class JoinError(Exception):
    """Base of the join failures this module raises itself."""


class ManagerUnreachableError(JoinError):
    """No working connection to the manager address given."""


class JoinRejectedError(JoinError):
    """The manager answered but refused; `code` is its error code (`invalid_join_token`...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AlreadyJoinedError(JoinError):
    """The state directory already holds a node certificate: joining again would orphan it."""


@dataclass(frozen=True, slots=True)
class ManagerAddr:
    node_id: str
    addr: str


@dataclass(frozen=True, slots=True)
class JoinResult:
    node_id: str
    role: NodeRole
    cluster_id: str
    managers: list[ManagerAddr]
    state_dir: Path
    cert_pem: bytes = field(repr=False)
    ca_cert_pem: bytes = field(repr=False)


def parse_address(addr: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address -> (host, port)."""
    if not isinstance(addr, str) or not addr.strip():
        raise JoinError("manager address is empty; give HOST[:PORT], e.g. 10.0.0.1:2377")
    text = addr.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise JoinError(f"manager address {addr!r} has no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise JoinError(f"manager address {addr!r} has an invalid port {port_text!r}")
    return host, int(port_text)


def _unreachable(addr: str, exc: Exception, stage: str) -> ManagerUnreachableError:
    return ManagerUnreachableError(
        f"cannot reach the manager at {addr} ({stage}): {exc}. Check that the address and "
        f"port are right (the cluster port is {DEFAULT_PORT} unless changed), that the "
        "manager's agent is running, and that no firewall blocks TCP from this host to it."
    )


async def fetch_root_ca(
    manager_addr: str, token: str, *, timeout: float = 10.0
) -> bytes:
    """Steps 1-3: the manager's root CA certificate, accepted only if the token names it.

    Raises InvalidJoinTokenError, ManagerUnreachableError or CADigestMismatchError.
    """
    from ..ca.tokens import parse_join_token, require_ca_digest

    parsed = parse_join_token(token)
    host, port = parse_address(manager_addr)
    client = RpcClient(
        host, port, ssl=bootstrap_client_context(), timeout=timeout, connect_timeout=timeout
    )
    try:
        answer = await client.call(CA_ROOT, {})
    except RpcUnavailable as exc:
        raise _unreachable(f"{host}:{port}", exc, "fetching the root CA") from exc
    except RpcError as exc:
        raise JoinRejectedError(exc.code, f"manager at {host}:{port} refused ca.root: {exc.message}") from exc
    finally:
        await client.close()
    ca_pem = answer.get("ca_cert") if isinstance(answer, dict) else None
    if isinstance(ca_pem, str):
        ca_pem = ca_pem.encode()
    if not isinstance(ca_pem, bytes):
        raise CADigestMismatchError(
            f"the peer at {host}:{port} sent no CA certificate; is it a swarmkit-py manager?"
        )
    require_ca_digest(parsed, ca_pem)
    # From the DER the digest matched, not the bytes as sent: the CA this node will trust is
    # exactly the one its token names (sslfacts.certificate_der refuses a PEM of two).
    return ssl.DER_cert_to_PEM_cert(certificate_der(ca_pem)).encode()


async def join(
    manager_addr: str,
    token: str,
    state_dir: str | os.PathLike[str],
    hostname: str,
    advertise_addr: str,
    *,
    availability: str | None = None,
    timeout: float = 30.0,
    key_and_csr: Callable[[str], Awaitable[tuple[bytes, bytes]]] | None = None,
) -> JoinResult:
    """Join the swarm that `manager_addr` belongs to; see the module docstring for the steps.

    `advertise_addr` (host or host:port) is what other nodes use to reach this one; it goes
    into the certificate as a SAN. On success `state_dir` holds `swarm-node.key` (0600),
    `swarm-node.crt` and `swarm-root-ca.crt`. `key_and_csr(common_name)`: where the node's
    key and CSR are made (default: in this process, `make_key_and_csr`).
    """
    from ..ca.tokens import parse_join_token

    state = Path(state_dir)
    if (state / NODE_CERT_FILE).exists():
        raise AlreadyJoinedError(
            f"{state} already holds a node certificate: this node is already part of a swarm. "
            "Leave it first (swarmkit-py leave) before joining again."
        )
    parsed = parse_join_token(token)
    host, port = parse_address(manager_addr)
    where = f"{host}:{port}"
    ca_pem = await fetch_root_ca(manager_addr, token, timeout=timeout)
    try:
        key_pem, csr_pem = await (key_and_csr or make_key_and_csr)(hostname or "")
    except CAError as exc:
        raise JoinError(str(exc)) from None
    params: dict[str, Any] = {
        "token": str(parsed),
        "csr": csr_pem.decode(),
        "hostname": hostname,
        "addr": advertise_addr,
    }
    if availability:
        params["availability"] = availability
    client = RpcClient(
        host,
        port,
        ssl=client_context(ca_pem),
        server_hostname=MANAGER_SERVER_NAME,
        timeout=timeout,
        connect_timeout=timeout,
        # The subject's role, not only the SAN: a worker certificate issued before ca.join
        # filtered SANs may carry "swarm-manager" (issue 9, holes 2 and 4).
        verify_peer=expect_manager(),
    )
    try:
        answer = await client.call(CA_JOIN, params)
    except RpcUnavailable as exc:
        raise _unreachable(
            where, exc, "verified connection; the peer must present a manager certificate of "
            "the swarm's CA"
        ) from exc
    except RpcError as exc:
        raise JoinRejectedError(exc.code, f"manager at {where} refused the join: {exc.message}") from exc
    finally:
        await client.close()

    result = _check_answer(answer, ca_pem, key_pem, where)
    cert_pem = result["cert"]
    # CA first, then key, then certificate (save_node_credentials' order); the certificate
    # file is what marks the node as joined, so a crash anywhere before it leaves a state
    # directory that a plain re-run of `join` overwrites, never a cert without its CA or key.
    write_atomic(ensure_private_dir(state) / ROOT_CA_CERT_FILE, ca_pem, CERT_MODE)
    save_node_credentials(state, cert_pem, key_pem)
    return JoinResult(
        node_id=result["node_id"],
        role=result["role"],
        cluster_id=result["cluster_id"],
        managers=result["managers"],
        state_dir=state,
        cert_pem=cert_pem,
        ca_cert_pem=ca_pem,
    )


async def make_key_and_csr(common_name: str) -> tuple[bytes, bytes]:
    """The node's key and CSR, made in this process (`cryptography`)."""
    from ..ca.certs import generate_key_and_csr

    return generate_key_and_csr(common_name)


def _check_answer(answer: Any, ca_pem: bytes, key_pem: bytes, where: str) -> dict[str, Any]:
    """Trust nothing in the answer that the CA signature does not vouch for: the certificate
    must be signed by the swarm's CA (the one the token named) and be for the key made here
    (ca/sslfacts.py: one TLS handshake in memory checks both, as a manager checks a node)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("cert"), str):
        raise JoinError(f"manager at {where} sent a malformed join answer")
    try:
        # exactly one certificate, kept as the DER that was checked (as the CA: fetch_root_ca)
        cert_pem = ssl.DER_cert_to_PEM_cert(certificate_der(answer["cert"])).encode()
        ident = identity_from_cert(verify_issued(cert_pem, key_pem, ca_pem))
    except CAError as exc:
        raise JoinError(f"manager at {where} sent an unusable certificate: {exc}") from exc
    if ident.role not in NODE_ROLES:
        raise JoinError(f"manager at {where} issued a {ident.role} certificate, not a node one")
    managers = []
    for m in answer.get("managers") or []:
        if isinstance(m, dict) and isinstance(m.get("addr"), str):
            managers.append(ManagerAddr(node_id=str(m.get("node_id", "")), addr=m["addr"]))
    return {
        "cert": cert_pem,
        # From the certificate, not the answer's fields: it is what peers will believe.
        "node_id": ident.node_id,
        "role": NodeRole.MANAGER if ident.role is CertRole.MANAGER else NodeRole.WORKER,
        "cluster_id": ident.cluster_id,
        "managers": managers,
    }
