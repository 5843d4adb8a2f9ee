"""Framed RPC: framing edge cases, multiplexing, errors, and mutual TLS on loopback."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swarmkit_py.rpc import (
    DEADLINE_EXCEEDED,
    FRAME_TOO_LARGE,
    INTERNAL,
    UNKNOWN_METHOD,
    FrameDecoder,
    FrameTooLarge,
    HandlerRegistry,
    PeerInfo,
    RpcClient,
    RpcError,
    RpcServer,
    RpcTimeout,
    RpcUnavailable,
    pack_frame,
)
from swarmkit_py.rpc.framing import NOTIFY, REQUEST, RESPONSE, notification_encoder, unpack_body

LOOPBACK = "127.0.0.1"


async def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def server():
    srv = RpcServer(LOOPBACK, 0)

    async def echo(peer: PeerInfo, params):
        return params

    srv.add_handler("echo", echo)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def client(server):
    c = RpcClient(LOOPBACK, server.bound_port, timeout=5.0)
    yield c
    await c.close()


def closed_port() -> int:
    """A loopback port nothing listens on: bound, read, and closed again."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- framing without sockets -----------------------------------------------------------------


def test_frames_round_trip_through_decoder():
    values = [None, 0, "x" * 1000, b"\x00\xff" * 300, [1, [2, [3]]], {"k": b"v"}]
    stream = b"".join(pack_frame(v) for v in values)
    bodies = FrameDecoder().feed(stream)
    assert [unpack_body(b) for b in bodies] == values


def test_decoder_reassembles_frames_fed_one_byte_at_a_time():
    values = [
        (REQUEST, 7, "echo", {"a": 1}),
        (NOTIFY, "m", b"payload" * 50),
        (RESPONSE, 7, None, 3),
    ]
    stream = b"".join(pack_frame(v) for v in values)
    dec = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += dec.feed(stream[i : i + 1])
    assert [tuple(unpack_body(b)) for b in got] == [tuple(v) for v in values]
    assert dec.buffered == 0


def test_decoder_keeps_a_split_tail_for_the_next_chunk():
    stream = pack_frame("first") + pack_frame("second")
    dec = FrameDecoder()
    cut = len(pack_frame("first")) + 2  # inside the second header
    assert [unpack_body(b) for b in dec.feed(stream[:cut])] == ["first"]
    assert dec.buffered == 2
    assert [unpack_body(b) for b in dec.feed(stream[cut:])] == ["second"]


def test_decoder_rejects_oversize_header_before_the_body_arrives():
    dec = FrameDecoder(max_frame=100)
    with pytest.raises(FrameTooLarge) as err:
        dec.feed((101).to_bytes(4, "big"))
    assert err.value.code == FRAME_TOO_LARGE
    assert "101 bytes" in str(err.value) and "100" in str(err.value)


def test_encoder_refuses_oversize_frames():
    with pytest.raises(FrameTooLarge):
        pack_frame(b"x" * 200, max_frame=100)
    with pytest.raises(FrameTooLarge):
        notification_encoder("m", max_frame=100)(b"x" * 200)


def test_notification_encoder_matches_generic_framing():
    params = [1, 2, b"bytes", "str", None, [3.5]]
    assert notification_encoder("raft.msg")(params) == pack_frame((NOTIFY, "raft.msg", params))


# -- request / response ----------------------------------------------------------------------


async def test_call_round_trip(client):
    assert await client.call("echo", {"a": [1, 2], "b": b"\x00"}) == {"a": [1, 2], "b": b"\x00"}
    assert await client.call("echo") is None


async def test_concurrent_calls_complete_out_of_order_on_one_connection(server, client):
    finished: list[int] = []
    started = 0
    gates = [asyncio.Event() for _ in range(20)]

    async def slow(peer, n):
        # every call is in flight at once, then they finish last first (by gates, not by
        # timers: a loaded machine must not reorder them)
        nonlocal started
        started += 1
        if started == 20:
            gates[19].set()
        await gates[n].wait()
        finished.append(n)
        if n:
            gates[n - 1].set()
        return n * n

    server.add_handler("slow", slow)
    results = await asyncio.gather(*(client.call("slow", n) for n in range(20)))
    assert results == [n * n for n in range(20)]
    assert finished == sorted(finished, reverse=True)
    assert len(server.connections) == 1


async def test_handler_errors_travel_back_typed(server, client):
    async def not_leader(peer, params):
        raise RpcError("not_leader", "leader is node 3")

    async def broken(peer, params):
        raise KeyError("boom")

    server.add_handler("not_leader", not_leader)
    server.add_handler("broken", broken)

    with pytest.raises(RpcError) as err:
        await client.call("not_leader")
    assert (err.value.code, err.value.message) == ("not_leader", "leader is node 3")

    with pytest.raises(RpcError) as err:
        await client.call("broken")
    assert err.value.code == INTERNAL and "KeyError" in err.value.message

    with pytest.raises(RpcError) as err:
        await client.call("nope")
    assert err.value.code == UNKNOWN_METHOD and "nope" in err.value.message

    assert await client.call("echo", 5) == 5  # the connection survived all of it


async def test_timeout_raises_rpc_timeout_and_connection_stays_usable(server, client):
    async def hang(peer, params):
        await asyncio.sleep(30)

    server.add_handler("hang", hang)
    with pytest.raises(RpcTimeout) as err:
        await client.call("hang", timeout=0.05)
    assert isinstance(err.value, TimeoutError) and err.value.code == DEADLINE_EXCEEDED
    assert await client.call("echo", "still here") == "still here"


async def test_connect_failure_raises_unavailable_naming_the_address():
    port = closed_port()
    c = RpcClient(LOOPBACK, port)
    with pytest.raises(RpcUnavailable) as err:
        await c.call("echo", 1)
    assert f"{LOOPBACK}:{port}" in str(err.value)
    await c.close()


async def test_pending_calls_fail_unavailable_when_server_goes_away(server, client):
    entered = asyncio.Event()

    async def hang(peer, params):
        entered.set()
        await asyncio.sleep(30)

    server.add_handler("hang", hang)
    call = asyncio.create_task(client.call("hang", timeout=10))
    await entered.wait()
    await server.stop()
    with pytest.raises(RpcUnavailable):
        await call


async def test_client_reconnects_after_connection_loss(server, client):
    assert await client.call("echo", 1) == 1
    for conn in server.connections:
        await conn.aclose()
    await wait_until(lambda: client.connection is None, what="client to notice the loss")
    assert await client.call("echo", 2) == 2


async def test_oversize_outgoing_call_is_refused_locally(server):
    c = RpcClient(LOOPBACK, server.bound_port, max_frame=1024)
    with pytest.raises(FrameTooLarge):
        await c.call("echo", b"x" * 2048)
    assert await c.call("echo", b"x" * 10) == b"x" * 10
    await c.close()


async def test_oversize_response_becomes_an_error_not_a_broken_stream():
    srv = RpcServer(LOOPBACK, 0, max_frame=1024)

    async def big(peer, params):
        return b"x" * 4096

    srv.add_handler("big", big)
    await srv.start()
    try:
        async with RpcClient(LOOPBACK, srv.bound_port) as c:
            with pytest.raises(RpcError) as err:
                await c.call("big")
            assert err.value.code == FRAME_TOO_LARGE
    finally:
        await srv.stop()


async def test_server_closes_connection_on_oversize_incoming_frame():
    srv = RpcServer(LOOPBACK, 0, max_frame=1024)
    await srv.start()
    try:
        reader, writer = await asyncio.open_connection(LOOPBACK, srv.bound_port)
        writer.write((10**9).to_bytes(4, "big") + b"garbage")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # EOF: the server hung up
        writer.close()
        await wait_until(lambda: not srv.connections, what="server to drop the connection")
    finally:
        await srv.stop()


async def test_server_handles_a_request_trickled_in_partial_writes(server):
    reader, writer = await asyncio.open_connection(LOOPBACK, server.bound_port)
    frame = pack_frame((REQUEST, 42, "echo", "slowly"))
    for i in range(len(frame)):
        writer.write(frame[i : i + 1])
        await writer.drain()
        await asyncio.sleep(0)
    dec = FrameDecoder()
    bodies = []
    while not bodies:
        bodies = dec.feed(await asyncio.wait_for(reader.read(4096), 5))
    assert unpack_body(bodies[0]) == [RESPONSE, 42, None, "slowly"]
    writer.close()
    await writer.wait_closed()


async def test_garbage_closes_the_connection(server):
    reader, writer = await asyncio.open_connection(LOOPBACK, server.bound_port)
    writer.write((3).to_bytes(4, "big") + b"\xc1\xc1\xc1")  # 0xc1 is never valid msgpack
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


# -- notifications -----------------------------------------------------------------------------


async def test_notifications_arrive_in_order_without_responses(server, client):
    got: list[int] = []
    server.add_notification_handler("tick", lambda peer, n: got.append(n))
    for n in range(500):
        await client.notify("tick", n)
    await wait_until(lambda: len(got) == 500, what="500 notifications")
    assert got == list(range(500))


async def test_async_notification_handlers_keep_order(server, client):
    got: list[int] = []

    async def tick(peer, n):
        await asyncio.sleep(0.001 if n % 2 else 0)
        got.append(n)

    server.add_notification_handler("tick", tick)
    for n in range(50):
        await client.notify("tick", n)
    await wait_until(lambda: len(got) == 50, what="50 notifications")
    assert got == list(range(50))


async def test_a_waiting_reader_handles_frames_from_the_socket_callback(server, client):
    """With the read loop waiting for bytes, a frame is handled in the socket's data callback
    (no task), not one turn of the event loop later in the read task (issue 13)."""
    tasks: list = []
    server.add_notification_handler("tick", lambda peer, n: tasks.append(asyncio.current_task()))
    for n in range(6):
        await client.notify("tick", n)
        await wait_until(lambda n=n: len(tasks) == n + 1, what=f"notification {n}")
        await asyncio.sleep(0.01)
    assert tasks[1:] == [None] * 5


async def test_sync_and_async_handlers_keep_order_across_both_read_paths(server, client):
    """Frames after an async handler wait for it, whether they came in the same bytes (handed
    to a task) or later (buffered for the read loop, which waits for that task first)."""
    got: list[str] = []

    async def slow(peer, n):
        await asyncio.sleep(0.002)
        got.append(f"a{n}")

    server.add_notification_handler("slow", slow)
    server.add_notification_handler("fast", lambda peer, n: got.append(f"s{n}"))
    await client.call("echo", "connected")
    conn = client._conn
    expected = []
    for n in range(40):
        method = "slow" if n % 3 == 0 else "fast"
        conn.notify_nowait(method, n)
        expected.append(("a" if method == "slow" else "s") + str(n))
        if n % 7 == 0:
            await conn.drain()
            await asyncio.sleep(0.003 if n % 2 else 0)
    await conn.drain()
    await wait_until(lambda: len(got) == 40, what="40 notifications")
    assert got == expected


async def test_server_pushes_to_the_client_on_the_same_connection(server):
    pushed: list = []
    handlers = HandlerRegistry()
    handlers.add_notification_handler("assignments", lambda peer, p: pushed.append(p))

    async def session(peer: PeerInfo, node):
        for i in range(3):
            await peer.connection.notify("assignments", [node, i])
        return "session open"

    server.add_handler("session", session)
    async with RpcClient(LOOPBACK, server.bound_port, handlers=handlers) as c:
        assert await c.call("session", "node-a") == "session open"
        await wait_until(lambda: len(pushed) == 3, what="pushed assignments")
    assert pushed == [["node-a", 0], ["node-a", 1], ["node-a", 2]]


async def test_plain_connection_has_no_peer_certificate(server, client):
    seen: list[PeerInfo] = []

    async def who(peer, params):
        seen.append(peer)
        return peer.address_str

    server.add_handler("who", who)
    assert (await client.call("who")).startswith(f"{LOOPBACK}:")
    assert seen[0].cert is None and seen[0].certificate() is None


# -- mutual TLS --------------------------------------------------------------------------------


class ThrowawayCA:
    """A CA made for one test, issuing EC certificates (cheap to generate)."""

    def __init__(self, name: str = "test-ca") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, tmp_path, cn: str, ou: str) -> tuple[str, str, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, cn),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path = tmp_path / f"{cn}.crt"
        key_path = tmp_path / f"{cn}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return str(cert_path), str(key_path), cert

    def server_context(self, tmp_path, cn: str = "manager-1") -> ssl.SSLContext:
        cert, key, _ = self.issue(tmp_path, cn, "swarm-manager")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cadata=self.pem)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self, tmp_path, cn: str | None = "worker-1") -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=self.pem)
        if cn is not None:
            cert, key, _ = self.issue(tmp_path, cn, "swarm-worker")
            ctx.load_cert_chain(cert, key)
        return ctx


@pytest.fixture
async def tls_server(tmp_path):
    ca = ThrowawayCA()
    srv = RpcServer(LOOPBACK, 0, ssl=ca.server_context(tmp_path))
    seen: list[PeerInfo] = []

    async def whoami(peer: PeerInfo, params):
        seen.append(peer)
        subject = peer.certificate().subject
        return [
            subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value,
        ]

    srv.add_handler("whoami", whoami)
    await srv.start()
    yield ca, srv, seen
    await srv.stop()


async def test_mutual_tls_exposes_the_client_certificate(tmp_path, tls_server):
    ca, srv, seen = tls_server
    ctx = ca.client_context(tmp_path, "worker-7")
    async with RpcClient(LOOPBACK, srv.bound_port, ssl=ctx, timeout=5) as c:
        assert await c.call("whoami") == ["worker-7", "swarm-worker"]
        assert (
            c.connection.peer.certificate().subject.rfc4514_string().startswith("OU=swarm-manager")
        )
    der = seen[0].cert
    assert x509.load_der_x509_certificate(der).issuer == ca.cert.subject


async def test_server_rejects_a_client_without_certificate(tmp_path, tls_server):
    ca, srv, seen = tls_server
    async with RpcClient(
        LOOPBACK, srv.bound_port, ssl=ca.client_context(tmp_path, None), timeout=5
    ) as c:
        with pytest.raises(RpcUnavailable):
            await c.call("whoami")
    assert seen == []


async def test_server_rejects_a_certificate_from_another_ca(tmp_path, tls_server):
    ca, srv, seen = tls_server
    ctx = ThrowawayCA("rogue-ca").client_context(tmp_path, "intruder")
    ctx.load_verify_locations(cadata=ca.pem)  # it trusts the server; the server must not trust it
    async with RpcClient(LOOPBACK, srv.bound_port, ssl=ctx, timeout=5) as c:
        with pytest.raises(RpcUnavailable):
            await c.call("whoami")
    assert seen == []


async def test_client_rejects_a_server_from_another_ca(tmp_path, tls_server):
    ca, srv, seen = tls_server
    ctx = ThrowawayCA("other-ca").client_context(tmp_path, "worker-1")
    with pytest.raises(RpcUnavailable) as err:
        await RpcClient(LOOPBACK, srv.bound_port, ssl=ctx).call("whoami")
    assert f"{LOOPBACK}:{srv.bound_port}" in str(err.value)
