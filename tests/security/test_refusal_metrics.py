"""Refusals by the trust boundary are counted where an operator looks: the manager's /metrics
(`swarmkit_trust_refusals_total{port, reason}`), so an attack shows up on a dashboard.

A real manager (an agent process, real TLS on loopback) and a node joined with the real
`swarmkit-py join` (its agent is not even needed: its certificate is what the attacker holds).
The test plays one of each kind of refused visitor, then scrapes the manager's /metrics once and checks every counter
moved by exactly what was sent (and that, before, every series was already exported at 0):
- a stranger that does not speak TLS, and one with a certificate of another CA;
- a stranger (no certificate) sending a frame above its 64 KiB limit, one with a list above
  the msgpack container limit, one calling a manager-only method;
- a join with a token of the right CA but the wrong secret (the real `swarmkit-py join`);
- the worker's own certificate calling a manager-only method, sending a Raft message, and
  listing nodes on the Docker API with the real docker CLI;
- the worker's certificate after `docker node rm --force` (revoked).
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess

import msgpack
import pytest

from swarmkit_py.ca import CertRole, RootCA, client_context, generate_key_and_csr
from swarmkit_py.raft.codec import message_to_tuple
from swarmkit_py.raft.types import Message, MsgType
from swarmkit_py.rpc import RpcClient, RpcError
from swarmkit_py.rpc.framing import REQUEST
from swarmkit_py.testing.agents import DOCKER

from .attack import anonymous_context, certs, found, node_context, run

pytestmark = pytest.mark.slow

CLUSTER = 'swarmkit_trust_refusals_total{port="cluster",reason="%s"}'
API = 'swarmkit_trust_refusals_total{port="api",reason="%s"}'


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


async def _anonymous(port: int, data: bytes) -> None:
    """Send `data` without a certificate; wait until the manager closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=anonymous_context())
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            while await reader.read(1 << 16):
                pass
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _not_tls(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(10):
        await reader.read()
    writer.close()


def test_each_refusal_is_counted_in_the_managers_metrics(cluster, tmp_path):
    c = cluster
    (m1,), _ = found(c, managers=1)
    w0 = c.add("w0")
    c.join(w0, c.docker(m1, "swarm", "join-token", "-q", "worker").stdout.strip(), m1)
    c.wait_for(lambda: "w0" in c.docker(m1, "node", "ls", "--format", "{{.Hostname}}").stdout, 20, "w0 in the node list")
    before = c.metrics(m1)
    expected = ["tls_handshake_failed", "frame_too_large", "decode_limit", "method_not_open", "invalid_join_token",
                "permission_denied", "raft_not_manager", "revoked_certificate"]
    for reason in expected:
        assert before[CLUSTER % reason] == 0, f"{reason} not exported at 0 before any attack"
    assert before[API % "not_manager"] == 0

    foreign = RootCA.create()
    key, csr = generate_key_and_csr("f" * 25)
    foreign_cert = foreign.issue_node_certificate(csr, "f" * 25, CertRole.MANAGER, "other", ip_addresses=["127.0.0.1"])

    async def strangers():
        await _not_tls(m1.port)
        with pytest.raises((RpcError, OSError)):
            ctx = client_context(foreign.cert_pem, foreign_cert.cert_pem, key, check_hostname=False)
            ctx.check_hostname, ctx.verify_mode = False, 0  # the stranger does not check the server either
            async with RpcClient("127.0.0.1", m1.port, ssl=ctx, timeout=5, connect_timeout=5) as cl:
                await cl.call("ca.root", {})
        await _anonymous(m1.port, frame(msgpack.packb([REQUEST, 1, "ca.join", b"x" * (128 * 1024)])))
        await _anonymous(m1.port, frame(msgpack.packb([REQUEST, 1, "ca.join", [[]] * 1000])))
        await _anonymous(m1.port, frame(msgpack.packb([REQUEST, 1, "raft.members", {}])))

    run(strangers())

    token = c.docker(m1, "swarm", "join-token", "-q", "worker").stdout.strip()
    bad = token[:-8] + ("a" * 8 if not token.endswith("a" * 8) else "b" * 8)  # right CA digest, wrong secret
    intruder = c.add("intruder")
    r = c.join(intruder, bad, m1, check=False)
    assert r.returncode != 0 and "token" in (r.stderr + r.stdout).lower(), r.stderr

    worker_cert = ((certs(w0) / "swarm-node.crt").read_bytes(), (certs(w0) / "swarm-node.key").read_bytes())
    w0_raft_id, m1_raft_id = 7, m1.node_state()["raft_id"]

    async def worker():
        async with RpcClient("127.0.0.1", m1.port, ssl=node_context(w0, worker_cert), timeout=5) as cl:
            with pytest.raises(RpcError) as err:
                await cl.call("raft.members", {})
            assert err.value.code == "permission_denied"
            hb = Message(MsgType.HEARTBEAT, frm=w0_raft_id, to=m1_raft_id, term=99)
            await cl.notify("raft.msg", message_to_tuple(hb))
            await asyncio.sleep(0.5)

    run(worker())
    bundle = tmp_path / "w0-bundle"
    bundle.mkdir()
    shutil.copy(certs(w0) / "swarm-root-ca.crt", bundle / "ca.pem")
    (bundle / "cert.pem").write_bytes(worker_cert[0])
    (bundle / "key.pem").write_bytes(worker_cert[1])
    env = {**c.env, "DOCKER_CONFIG": str(tmp_path / "docker-config"), "DOCKER_HOST": f"tcp://127.0.0.1:{m1.api_port}",
           "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(bundle)}
    ls = subprocess.run([DOCKER, "node", "ls"], capture_output=True, text=True, env=env, timeout=30)
    assert ls.returncode != 0 and "worker certificates" in ls.stderr, ls.stderr

    c.docker(m1, "node", "rm", "--force", "w0")

    async def removed():
        with pytest.raises((RpcError, OSError)):
            async with RpcClient("127.0.0.1", m1.port, ssl=node_context(w0, worker_cert), timeout=5,
                                 connect_timeout=5) as cl:
                await cl.call("ca.root", {})

    run(removed())

    after = c.metrics(m1)
    moved = {reason: after[CLUSTER % reason] - before[CLUSTER % reason] for reason in expected}
    # not TLS at all, and a certificate of another CA
    assert moved["tls_handshake_failed"] == 2, moved
    assert {k: v for k, v in moved.items() if k != "tls_handshake_failed"} == {
        "frame_too_large": 1, "decode_limit": 1, "method_not_open": 1, "invalid_join_token": 1,
        "permission_denied": 1, "raft_not_manager": 1, "revoked_certificate": 1}, moved
    assert after[API % "not_manager"] - before[API % "not_manager"] >= 1
    assert after["swarmkit_raft_term"] == before["swarmkit_raft_term"]
