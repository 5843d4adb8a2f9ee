"""A one-manager swarm on 127.0.0.1 for the CA server and join tests (no test functions here).

Real pieces only: a root CA, a Cluster object with join tokens and the CA key in a store
behind a LocalProposer, the manager's own certificate, and an RpcServer with the
optional-client-certificate TLS context serving the CAServer. Every RPC method's calls are
counted, so a test can prove that a refused join never reached `ca.join`.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from swarmkit_py.ca import (
    CertRole,
    RootCA,
    client_context,
    generate_join_token,
    generate_key_and_csr,
    identity_from_cert,
)
from swarmkit_py.ca.optional_tls import server_context_optional_client
from swarmkit_py.manager.caserver import CAServer, require_identity
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.rpc import HandlerRegistry, PeerInfo, RpcClient, RpcServer
from swarmkit_py.store import (
    Cluster,
    ClusterSpec,
    JoinTokens,
    ManagerStatus,
    Node,
    NodeRole,
    NodeSpec,
    Reachability,
    Transaction,
    new_id,
)
from swarmkit_py.store import RootCA as StoredRootCA

LOOPBACK = "127.0.0.1"
MANAGER_ONLY = "test.manager_only"


@dataclass
class Creds:
    cert_pem: bytes
    key_pem: bytes


@dataclass
class Swarm:
    root: RootCA
    proposer: LocalProposer
    caserver: CAServer
    server: RpcServer
    cluster_id: str
    manager_id: str
    manager: Creds
    calls: Counter = field(default_factory=Counter)

    @property
    def addr(self) -> str:
        return f"{LOOPBACK}:{self.server.bound_port}"

    @property
    def store(self):
        return self.proposer.store

    def cluster(self) -> Cluster:
        c = self.store.view().cluster()
        assert c is not None
        return c

    @property
    def worker_token(self) -> str:
        return self.cluster().join_tokens.worker

    @property
    def manager_token(self) -> str:
        return self.cluster().join_tokens.manager

    def node(self, node_id: str) -> Node | None:
        return self.store.view().get_node(node_id)

    async def rotate(self, which: str) -> tuple[str, str]:
        """`docker swarm join-token --rotate which`: returns (old, new)."""
        cluster = self.cluster().clone()
        old = getattr(cluster.join_tokens, which)
        new = generate_join_token(self.root.cert_pem)
        setattr(cluster.join_tokens, which, new)
        await self.proposer.propose(Transaction().update(cluster))
        return old, new

    async def set_role(self, node_id: str, role: NodeRole) -> None:
        """What the role manager does on promote/demote: desired and actual role."""
        node = self.node(node_id)
        assert node is not None
        node = node.clone()
        node.spec.role = role
        node.role = role
        await self.proposer.propose(Transaction().update(node))

    def client(
        self, creds: Creds | None = None, handlers: HandlerRegistry | None = None
    ) -> RpcClient:
        """A client that verifies the manager, presenting `creds` if given."""
        ctx = client_context(
            self.root.cert_pem,
            creds.cert_pem if creds else None,
            creds.key_pem if creds else None,
        )
        return RpcClient(
            LOOPBACK,
            self.server.bound_port,
            ssl=ctx,
            server_hostname=CertRole.MANAGER.value,
            timeout=10.0,
            handlers=handlers,
        )

    def issue(self, role: CertRole, node_id: str | None = None, root: RootCA | None = None) -> Creds:
        """A node certificate straight from a CA (this swarm's unless `root` is given)."""
        key_pem, csr = generate_key_and_csr()
        issued = (root or self.root).issue_node_certificate(
            csr, node_id or new_id(), role, self.cluster_id, ip_addresses=[LOOPBACK]
        )
        return Creds(issued.cert_pem, key_pem)

    async def stop(self) -> None:
        await self.server.stop()


def _counting(calls: Counter, method: str, handler: Callable):
    async def wrapped(peer: PeerInfo, params):
        calls[method] += 1
        return await handler(peer, params)

    return wrapped


async def start_swarm() -> Swarm:
    root = RootCA.create()
    cluster_id = new_id()
    manager_id = new_id()
    key_pem, csr = generate_key_and_csr()
    issued = root.issue_node_certificate(
        csr, manager_id, CertRole.MANAGER, cluster_id, ip_addresses=[LOOPBACK]
    )
    manager = Creds(issued.cert_pem, key_pem)

    proposer = LocalProposer()
    cluster = Cluster(
        id=cluster_id,
        spec=ClusterSpec(name="default"),
        join_tokens=JoinTokens(
            worker=generate_join_token(root.cert_pem),
            manager=generate_join_token(root.cert_pem),
        ),
        root_ca=StoredRootCA(
            ca_cert=root.cert_pem.decode(),
            ca_key=root.key_pem.decode(),
            ca_cert_hash=root.digest,
        ),
    )
    await proposer.propose(Transaction().create(cluster))

    server = RpcServer(
        LOOPBACK,
        0,
        ssl=server_context_optional_client(manager.cert_pem, manager.key_pem, root.cert_pem),
    )
    caserver = CAServer(proposer)
    caserver.register(server)

    async def manager_only(peer: PeerInfo, params):
        ident = require_identity(peer, {CertRole.MANAGER}, cluster_id=cluster_id, action=MANAGER_ONLY)
        return {"caller": ident.node_id}

    server.add_handler(MANAGER_ONLY, manager_only)
    swarm = Swarm(root, proposer, caserver, server, cluster_id, manager_id, manager)
    for method, handler in list(server.handlers.requests.items()):
        server.handlers.requests[method] = _counting(swarm.calls, method, handler)
    await server.start()

    node = Node(
        id=manager_id,
        spec=NodeSpec(role=NodeRole.MANAGER),
        role=NodeRole.MANAGER,
        manager_status=ManagerStatus(
            leader=True, reachability=Reachability.REACHABLE, addr=swarm.addr
        ),
    )
    await proposer.propose(Transaction().create(node))
    assert identity_from_cert(manager.cert_pem).node_id == manager_id
    return swarm


def closed_port() -> int:
    """A loopback port nothing listens on: bound, read, and closed again."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
