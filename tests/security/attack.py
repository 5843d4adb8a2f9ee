"""The attacker's toolbox for tests/security: real agent processes on loopback, real TLS.

Every test here plays someone the cluster must not trust (an anonymous client of port 2377,
a worker holding its own valid certificate, a removed or demoted node) against real
`swarmkit-py agent` processes, and checks what the cluster did. Nothing is mocked: the
certificates come from the cluster's own CA (through `join`, or signed with the CA key the
test reads from the founding manager's state directory, to stand for a certificate obtained
before a fix), and the bytes go over real sockets.
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import timedelta
from pathlib import Path

from cryptography import x509

from swarmkit_py.ca import RootCA, client_context, generate_key_and_csr
from swarmkit_py.ca.identity import CertRole
from swarmkit_py.rpc import RpcServer
from swarmkit_py.testing.agents import AgentCluster, AgentProc

CERTS = "certs"


def found(c: AgentCluster, managers: int = 1, workers: int = 0) -> tuple[list[AgentProc], list[AgentProc]]:
    """A swarm of `managers` managers (m1 founded it and leads) and `workers` workers, every
    node Ready, driven through the real CLI."""
    m1 = c.add("m1")
    c.init(m1)
    c.start(m1)
    c.client_bundle(m1)
    ms, ws = [m1], []
    if managers > 1:
        mtoken = c.docker(m1, "swarm", "join-token", "-q", "manager").stdout.strip()
        for i in range(2, managers + 1):
            m = c.add(f"m{i}")
            c.join(m, mtoken, m1)
            c.start(m)
            ms.append(m)
    if workers:
        wtoken = c.docker(m1, "swarm", "join-token", "-q", "worker").stdout.strip()
        for i in range(workers):
            w = c.add(f"w{i}")
            c.join(w, wtoken, m1)
            c.start(w)
            ws.append(w)
    total = managers + workers
    c.wait_for(lambda: _ready_count(c, m1) == total, 60, f"{total} nodes Ready")
    if managers > 1:
        c.wait_for(lambda: c.metrics(m1)['swarmkit_raft_members{kind="voter"}'] == managers, 60,
                   f"{managers} Raft voters")
    return ms, ws


def _ready_count(c: AgentCluster, via: AgentProc) -> int:
    out = c.docker(via, "node", "ls", "--format", "{{.Status}}").stdout.split()
    return sum(1 for s in out if s == "Ready")


def node_id(n: AgentProc) -> str:
    return n.node_state()["node_id"]


def certs(n: AgentProc) -> Path:
    return n.state_dir / CERTS


def cluster_ca(m: AgentProc) -> RootCA:
    """The cluster's root CA with its key, as exported by a running manager."""
    d = certs(m)
    AgentCluster.wait_for(lambda: (d / "swarm-root-ca.key").exists(), 20, "CA key exported")
    return RootCA.from_pem((d / "swarm-root-ca.crt").read_bytes(), (d / "swarm-root-ca.key").read_bytes())


def node_cert(n: AgentProc) -> tuple[bytes, bytes]:
    d = certs(n)
    return (d / "swarm-node.crt").read_bytes(), (d / "swarm-node.key").read_bytes()


def forged_worker_cert(m: AgentProc, worker: AgentProc, extra_dns: list[str]) -> tuple[bytes, bytes]:
    """A *worker* certificate for `worker`'s node id carrying extra DNS SANs (say
    "swarm-manager"): what `ca.join` handed out before hole 4 was closed. Signed by the real
    cluster CA, so TLS alone accepts it; only a role check can refuse it."""
    ca = cluster_ca(m)
    key_pem, csr_pem = generate_key_and_csr(node_id(worker))
    # RootCA._sign: the public issuing methods now drop such names (hole 4's fix); this is
    # the certificate an attacker may still hold from before it.
    issued = ca._sign(
        public_key=x509.load_pem_x509_csr(csr_pem).public_key(), common_name=node_id(worker),
        role=CertRole.WORKER, cluster_id=worker.node_state()["cluster_id"],
        dns_names=[node_id(worker), CertRole.WORKER.value, *extra_dns], ip_addresses=["127.0.0.1"],
        server_auth=True, now=None, validity=timedelta(days=1),
    )
    return issued.cert_pem, key_pem


def ca_pem(n: AgentProc) -> bytes:
    return (certs(n) / "swarm-root-ca.crt").read_bytes()


def anonymous_context() -> ssl.SSLContext:
    """TLS without a client certificate and without checking the server: a stranger."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def node_context(n: AgentProc, cert_key: tuple[bytes, bytes] | None = None) -> ssl.SSLContext:
    """A client context presenting `n`'s certificate (or `cert_key`), not checking the server."""
    cert, key = cert_key or node_cert(n)
    ctx = client_context(ca_pem(n), cert, key, check_hostname=False)
    return ctx


def rogue_server(port: int, ca: bytes, cert_key: tuple[bytes, bytes]) -> RpcServer:
    """An RPC server on 127.0.0.1:`port` presenting `cert_key` (a worker's), accepting any
    client certificate of the cluster: the impostor that took over a manager's address."""
    from swarmkit_py.ca.optional_tls import server_context_optional_client

    cert, key = cert_key
    return RpcServer("127.0.0.1", port, ssl=server_context_optional_client(cert, key, ca))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def run(coro, timeout: float = 120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


