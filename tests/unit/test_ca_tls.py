"""Real mutual TLS handshakes on 127.0.0.1 with the contexts from `swarmkit_py.ca.tls`."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

import pytest

from swarmkit_py.ca import (
    CertRole,
    InvalidCertificateError,
    PermissionDeniedError,
    RootCA,
    authorize,
    client_context,
    generate_key_and_csr,
    issue_client_bundle,
    peer_identity,
    server_context,
)

CLUSTER = "cluster-1"
TIMEOUT = 10


@dataclass
class Creds:
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes


def node(root: RootCA, node_id: str, role: CertRole) -> Creds:
    key_pem, csr = generate_key_and_csr()
    issued = root.issue_node_certificate(csr, node_id, role, CLUSTER, ip_addresses=["127.0.0.1"])
    return Creds(issued.cert_pem, key_pem, issued.ca_cert_pem)


@pytest.fixture(scope="module")
def root() -> RootCA:
    return RootCA.create()


@pytest.fixture(scope="module")
def foreign_root() -> RootCA:
    return RootCA.create()


@pytest.fixture(scope="module")
def manager(root) -> Creds:
    return node(root, "manager0000000000000000001", CertRole.MANAGER)


@pytest.fixture(scope="module")
def worker(root) -> Creds:
    return node(root, "worker00000000000000000001", CertRole.WORKER)


@dataclass
class Outcome:
    reply: bytes | None = None
    error: BaseException | None = None
    seen_by_server: list = field(default_factory=list)
    loop_errors: list = field(default_factory=list)
    # connections that got past the TLS handshake to the application handler
    handled: int = 0

    @property
    def ok(self) -> bool:
        return self.reply is not None and self.reply.startswith(b"ok ")


async def exchange(server_ctx, client_ctx, server_hostname: str | None) -> Outcome:
    """One request over a fresh connection. The server plays a Raft endpoint: it answers only
    callers whose certificate says swarm-manager, as the real RPC layer will."""
    outcome = Outcome()
    # Failed handshakes are expected in these tests; keep asyncio from logging each one.
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: outcome.loop_errors.append(ctx))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        outcome.handled += 1
        try:
            ident = peer_identity(writer.transport)
            outcome.seen_by_server.append(ident)
            await reader.readline()
            try:
                authorize(ident, [CertRole.MANAGER], cluster_id=CLUSTER, action="raft message")
                writer.write(f"ok {ident.node_id} {ident.role}\n".encode())
            except PermissionDeniedError as exc:
                writer.write(f"denied {exc}\n".encode())
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(TIMEOUT):
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname
                )
                writer.write(b"append-entries\n")
                await writer.drain()
                outcome.reply = await reader.readline()
                writer.close()
            except (ssl.SSLError, ConnectionError, OSError) as exc:
                outcome.error = exc
    finally:
        server.close()
        await server.wait_closed()
        loop.set_exception_handler(previous)
    return outcome


def srv(c: Creds) -> ssl.SSLContext:
    return server_context(c.cert_pem, c.key_pem, c.ca_pem)


async def test_manager_to_manager_mutual_tls_succeeds(root, manager):
    peer = node(root, "manager0000000000000000002", CertRole.MANAGER)
    client = client_context(peer.ca_pem, peer.cert_pem, peer.key_pem)
    out = await exchange(srv(manager), client, "swarm-manager")
    assert out.error is None
    assert out.reply == b"ok manager0000000000000000002 swarm-manager\n"
    assert [i.node_id for i in out.seen_by_server] == ["manager0000000000000000002"]


async def test_worker_certificate_handshakes_but_cannot_send_raft_messages(manager, worker):
    client = client_context(worker.ca_pem, worker.cert_pem, worker.key_pem)
    out = await exchange(srv(manager), client, "swarm-manager")
    assert out.error is None
    assert out.reply.startswith(b"denied node worker00000000000000000001 has role swarm-worker")
    assert out.seen_by_server[0].role is CertRole.WORKER


async def test_client_without_certificate_is_rejected(manager):
    client = client_context(manager.ca_pem)  # trusts the CA, presents nothing
    out = await exchange(srv(manager), client, "swarm-manager")
    assert not out.ok
    assert out.handled == 0  # refused by TLS itself, not by the handler


async def test_client_with_certificate_from_another_ca_is_rejected(manager, foreign_root):
    impostor = node(foreign_root, "manager0000000000000000009", CertRole.MANAGER)
    # it trusts our CA (it fetched it) but its own cert is signed by a different one
    client = client_context(manager.ca_pem, impostor.cert_pem, impostor.key_pem)
    out = await exchange(srv(manager), client, "swarm-manager")
    assert not out.ok
    assert out.handled == 0  # refused by TLS itself, not by the handler


async def test_client_refuses_a_server_from_another_ca(manager, foreign_root):
    impostor = node(foreign_root, "manager0000000000000000009", CertRole.MANAGER)
    client = client_context(manager.ca_pem, manager.cert_pem, manager.key_pem)
    out = await exchange(srv(impostor), client, "swarm-manager")
    assert isinstance(out.error, ssl.SSLCertVerificationError)
    assert out.seen_by_server == []


async def test_worker_cannot_pose_as_a_manager_server(manager, worker):
    client = client_context(manager.ca_pem, manager.cert_pem, manager.key_pem)
    out = await exchange(srv(worker), client, "swarm-manager")
    assert isinstance(out.error, ssl.SSLCertVerificationError)
    assert "swarm-manager" in str(out.error)


async def test_hostname_check_by_node_id_pins_one_peer(root, manager):
    peer = node(root, "manager0000000000000000003", CertRole.MANAGER)
    client = client_context(peer.ca_pem, peer.cert_pem, peer.key_pem)
    good = await exchange(srv(manager), client, "manager0000000000000000001")
    assert good.ok
    wrong = await exchange(srv(manager), client, "manager0000000000000000007")
    assert isinstance(wrong.error, ssl.SSLCertVerificationError)
    # with the check off the CA still decides: the handshake works by address alone
    loose = client_context(peer.ca_pem, peer.cert_pem, peer.key_pem, check_hostname=False)
    assert (await exchange(srv(manager), loose, None)).ok


async def test_ip_san_lets_address_based_clients_verify(manager):
    # what the Docker CLI does: DOCKER_HOST=tcp://127.0.0.1:2376 checks the IP it dialled
    client = client_context(manager.ca_pem, manager.cert_pem, manager.key_pem)
    assert (await exchange(srv(manager), client, "127.0.0.1")).ok


async def test_docker_client_bundle_works_as_tls_client(tmp_path, root, manager):
    d = issue_client_bundle(root, tmp_path, "admin", CLUSTER)
    client = client_context(
        (d / "ca.pem").read_bytes(), (d / "cert.pem").read_bytes(), (d / "key.pem").read_bytes()
    )
    out = await exchange(srv(manager), client, "127.0.0.1")
    assert out.error is None
    # the handshake succeeds (client auth EKU) and the server sees a client, not a node
    assert out.seen_by_server[0].role is CertRole.CLIENT
    assert out.reply.startswith(b"denied node admin has role swarm-client")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
async def test_tls_below_1_2_is_refused(manager):
    client = client_context(manager.ca_pem, manager.cert_pem, manager.key_pem)
    client.minimum_version = ssl.TLSVersion.TLSv1
    client.maximum_version = ssl.TLSVersion.TLSv1_1
    out = await exchange(srv(manager), client, "swarm-manager")
    assert not out.ok
    assert out.handled == 0  # refused by TLS itself, not by the handler


def test_contexts_require_tls12_and_client_certs(manager):
    s = srv(manager)
    c = client_context(manager.ca_pem, manager.cert_pem, manager.key_pem)
    assert s.minimum_version == c.minimum_version == ssl.TLSVersion.TLSv1_2
    assert s.verify_mode == c.verify_mode == ssl.CERT_REQUIRED
    assert c.check_hostname


def test_mismatched_key_and_half_given_identity_are_refused(manager, worker):
    with pytest.raises(InvalidCertificateError, match="does not match"):
        server_context(manager.cert_pem, worker.key_pem, manager.ca_pem)
    with pytest.raises(ValueError, match="both"):
        client_context(manager.ca_pem, manager.cert_pem, None)
