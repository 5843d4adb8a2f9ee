"""rpc.tls_accept: TLS on port 2377 is lean until the peer is authenticated, handshakes are
capped, and failed ones are counted. Real TLS on loopback with a real cluster CA.

This also pins what the module relies on in asyncio's private SSLProtocol (the read buffer
allocated from ``max_size`` and grown by ``get_buffer``): a Python release that changes it
fails here."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl

import pytest

from swarmkit_py.ca import CertRole, RootCA, client_context, generate_key_and_csr
from swarmkit_py.ca.optional_tls import server_context_optional_client
from swarmkit_py.manager.admission import cluster_port_policy
from swarmkit_py.rpc import RpcClient, RpcError, RpcServer
from swarmkit_py.rpc.tls_accept import AUTHENTICATED_READ_BUFFER, PRE_AUTH_READ_BUFFER

CLUSTER = "cluster-tls-accept"
LOOPBACK = "127.0.0.1"


def creds(root: RootCA, role: CertRole) -> tuple[bytes, bytes]:
    key, csr = generate_key_and_csr()
    node_id = "a" * 25 if role is CertRole.MANAGER else "b" * 25
    return root.issue_node_certificate(csr, node_id, role, CLUSTER, ip_addresses=[LOOPBACK]).cert_pem, key


@pytest.fixture(scope="module")
def root() -> RootCA:
    return RootCA.create()


async def serve(root: RootCA, **policy) -> RpcServer:
    cert, key = creds(root, CertRole.MANAGER)
    srv = RpcServer(LOOPBACK, 0, ssl=server_context_optional_client(cert, key, root.cert_pem),
                    handshake_timeout=policy.pop("handshake_timeout", 10.0),
                    policy=dataclasses.replace(cluster_port_policy(), **policy))
    srv.add_handler("ca.root", lambda peer, params: "root")
    srv.add_handler("echo", lambda peer, params: len(params))
    await srv.start()
    return srv


def read_buffer(conn) -> int:
    return conn._writer.transport._ssl_protocol.read_buffer_size


async def wait_for(cond, what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def anonymous() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def test_read_buffer_small_for_strangers_grows_for_certificates(root):
    srv = await serve(root)
    try:
        stranger = RpcClient(LOOPBACK, srv.bound_port, ssl=anonymous(), timeout=5)
        cert, key = creds(root, CertRole.WORKER)
        node = RpcClient(LOOPBACK, srv.bound_port, ssl=client_context(root.cert_pem, cert, key, check_hostname=False),
                         timeout=5)
        assert await stranger.call("ca.root") == "root"
        assert await node.call("echo", b"x" * 100_000) == 100_000
        by_kind = {c.is_anonymous: c for c in srv.connections}
        assert read_buffer(by_kind[True]) == PRE_AUTH_READ_BUFFER
        assert read_buffer(by_kind[False]) == AUTHENTICATED_READ_BUFFER
        await stranger.close()
        await node.close()
    finally:
        await srv.stop()


async def test_handshakes_are_capped_and_failures_counted(root):
    srv = await serve(root, max_handshakes=2, handshake_timeout=0.5)
    try:
        # Two sockets that never start TLS hold both handshake slots...
        parked = [await asyncio.open_connection(LOOPBACK, srv.bound_port) for _ in range(2)]
        # ...so a third is dropped at accept, before any TLS state exists.
        reader, writer = await asyncio.open_connection(LOOPBACK, srv.bound_port)
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
        await wait_for(lambda: srv.refused["handshakes_over_capacity"] == 1, "the third connection dropped")
        # The parked ones time out; then garbage instead of a ClientHello fails the handshake.
        await wait_for(lambda: srv.refused["tls_handshake_timeout"] == 2, "both parked handshakes timed out")
        reader, writer = await asyncio.open_connection(LOOPBACK, srv.bound_port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        async with asyncio.timeout(5):
            await reader.read()
        writer.close()
        await wait_for(lambda: srv.refused["tls_handshake_failed"] == 1, "the garbage handshake counted")
        # A certificate from another CA fails the handshake too; the server keeps serving.
        other = RootCA.create()
        cert, key = creds(other, CertRole.MANAGER)
        with pytest.raises((RpcError, OSError)):
            async with RpcClient(LOOPBACK, srv.bound_port, timeout=5, connect_timeout=5,
                                 ssl=client_context(root.cert_pem, cert, key, check_hostname=False)) as c:
                await c.call("ca.root")
        await wait_for(lambda: srv.refused["tls_handshake_failed"] == 2, "the foreign certificate counted")
        async with RpcClient(LOOPBACK, srv.bound_port, ssl=anonymous(), timeout=5) as c:
            assert await c.call("ca.root") == "root"
        for _, w in parked:
            w.close()
    finally:
        await srv.stop()


async def test_the_handshake_backlog_counts_peers_trying_to_get_in(root):
    """`RpcServer.handshake_backlog()`: connections whose TLS handshake has not finished (in
    progress or waiting for a slot); the dispatcher keeps a silent worker while it is not zero
    (its session may be one of them). A finished handshake leaves it."""
    srv = await serve(root, max_active_handshakes=1, handshake_timeout=5.0)
    try:
        assert srv.handshake_backlog() == 0
        parked = [await asyncio.open_connection(LOOPBACK, srv.bound_port) for _ in range(3)]
        await wait_for(lambda: srv.handshake_backlog() == 3, "three connections without TLS yet")
        for _, w in parked:
            w.close()
        await wait_for(lambda: srv.handshake_backlog() == 0, "the parked peers gone")
        async with RpcClient(LOOPBACK, srv.bound_port, ssl=anonymous(), timeout=5) as c:
            assert await c.call("ca.root") == "root"
            assert srv.handshake_backlog() == 0
    finally:
        await srv.stop()
