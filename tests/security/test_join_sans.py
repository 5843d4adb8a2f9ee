"""Hole 4: a joining node chose its certificate's DNS names (issue 9).

`ca.join` copied the caller's `addr` into the certificate's SANs unfiltered, so joining with
the *worker* token and `addr="swarm-manager"` (or a manager's node id) yielded a worker
certificate that passed the hostname check clients use to recognise a manager (or that exact
manager). The attacker here is a stranger holding the worker token, joining a real manager
over real TLS with the project's own join client. The manager must refuse the join with a
clear error and record no node; the certificate it would have issued must never exist.
"""

from __future__ import annotations

import pytest

from swarmkit_py.ca.optional_tls import server_context_optional_client
from swarmkit_py.rpc import RpcClient, RpcServer
from swarmkit_py.worker.join import JoinRejectedError, join

from .attack import ca_pem, found, node_id, run

pytestmark = pytest.mark.slow


async def _poses_as(cert: bytes, key: bytes, ca: bytes, server_name: str) -> bool:
    """Does a client that checks `server_name` accept a server presenting this certificate?"""
    from swarmkit_py.ca import client_context

    srv = RpcServer("127.0.0.1", 0, ssl=server_context_optional_client(cert, key, ca))
    srv.add_handler("ping", lambda peer, params: "pong")
    await srv.start()
    client = RpcClient("127.0.0.1", srv.bound_port, ssl=client_context(ca), server_hostname=server_name, timeout=5)
    try:
        return await client.call("ping") == "pong"
    except Exception:
        return False
    finally:
        await client.close()
        await srv.stop()


def test_join_cannot_choose_a_role_or_node_id_as_its_name(cluster, tmp_path):
    c = cluster
    (m1,), _ = found(c, managers=1)
    wtoken = c.docker(m1, "swarm", "join-token", "-q", "worker").stdout.strip()
    before = c.docker(m1, "node", "ls", "-q").stdout.split()

    async def attack(target: str, state):
        try:
            result = await join(m1.addr, wtoken, state, "attacker", f"{target}:2377")
        except JoinRejectedError as e:
            return e
        name = target.lower().rstrip(".")
        return await _poses_as(result.cert_pem, (state / "swarm-node.key").read_bytes(), ca_pem(m1), name)

    for i, target in enumerate(["swarm-manager", node_id(m1), "SWARM-MANAGER.", "swarm-worker"]):
        outcome = run(attack(target, tmp_path / f"attacker{i}"))
        assert not isinstance(outcome, bool), (
            f"ca.join issued a certificate for advertise address {target!r}"
            + (" that passes a hostname check for it" if outcome else "")
        )
        assert outcome.code == "invalid_argument" and "reserved" in str(outcome), str(outcome)
    assert c.docker(m1, "node", "ls", "-q").stdout.split() == before, "a refused join must record no node"
