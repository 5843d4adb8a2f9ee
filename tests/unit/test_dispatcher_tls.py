"""The dispatcher's identity comes from the mutual-TLS certificate, never from the request."""

from __future__ import annotations

import asyncio

import pytest

from swarmkit_py.ca import CertRole, RootCA, client_context, generate_key_and_csr
from swarmkit_py.ca.optional_tls import server_context_optional_client
from swarmkit_py.manager.dispatcher import (
    Dispatcher,
    StaticDirectory,
    cert_identity,
)
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.proto import PERMISSION_DENIED, SESSION
from swarmkit_py.rpc import RpcClient, RpcError, RpcServer
from swarmkit_py.store import Node, NodeRole, NodeState, NodeStatus, Transaction, new_id
from swarmkit_py.worker.session import WorkerSession

CLUSTER = "cluster-1"


def creds(root: RootCA, node_id: str, role: CertRole | None):
    key_pem, csr = generate_key_and_csr()
    if role is None:
        issued = root.issue_client_certificate(csr, "operator", CLUSTER)
    else:
        issued = root.issue_node_certificate(
            csr, node_id, role, CLUSTER, ip_addresses=["127.0.0.1"]
        )
    return issued.cert_pem, key_pem


@pytest.fixture(scope="module")
def root() -> RootCA:
    return RootCA.create()


@pytest.fixture
async def tls_manager(root):
    proposer = LocalProposer()
    cert, key = creds(root, new_id(), CertRole.MANAGER)
    server = RpcServer("127.0.0.1", 0, ssl=server_context_optional_client(cert, key, root.cert_pem))
    dispatcher = Dispatcher(
        proposer, heartbeat_period=0.1, identify=cert_identity(CLUSTER), directory=StaticDirectory()
    )
    dispatcher.register(server)
    await server.start()
    dispatcher.start()
    yield proposer, server
    await dispatcher.stop()
    await server.stop()


async def add_node(proposer) -> str:
    node = Node(id=new_id(), role=NodeRole.WORKER, status=NodeStatus(state=NodeState.UNKNOWN))
    await proposer.propose(Transaction().create(node))
    return node.id


async def test_worker_certificate_opens_its_own_session(root, tls_manager):
    proposer, server = tls_manager
    node_id = await add_node(proposer)
    cert, key = creds(root, node_id, CertRole.WORKER)
    ctx = client_context(root.cert_pem, cert, key)
    addr = f"127.0.0.1:{server.bound_port}"
    async with WorkerSession(node_id, [addr], ssl_context=ctx, describe=None) as w:
        await w.wait_connected(5)
        assert proposer.store.view().get_node(node_id).status.state == NodeState.READY
    other = await add_node(proposer)
    # The same certificate claiming another node's id is refused, and nothing is written.
    impostor = WorkerSession(other, [addr], ssl_context=ctx, describe=None)
    async with impostor, asyncio.timeout(5):
        while "permission_denied" not in (impostor.last_error or ""):
            await asyncio.sleep(0.01)
    assert proposer.store.view().get_node(other).status.state == NodeState.UNKNOWN


@pytest.mark.parametrize("who", ["client-cert", "no-cert"])
async def test_callers_without_a_node_certificate_are_refused(root, tls_manager, who):
    proposer, server = tls_manager
    node_id = await add_node(proposer)
    if who == "client-cert":
        cert, key = creds(root, "", None)
        ctx = client_context(root.cert_pem, cert, key)
    else:
        ctx = client_context(root.cert_pem)
    async with RpcClient(
        "127.0.0.1", server.bound_port, ssl=ctx, server_hostname="swarm-manager", timeout=5
    ) as client:
        with pytest.raises(RpcError) as err:
            await client.call(SESSION, {"node_id": node_id})
    assert err.value.code == PERMISSION_DENIED
    assert proposer.store.view().get_node(node_id).status.state == NodeState.UNKNOWN
