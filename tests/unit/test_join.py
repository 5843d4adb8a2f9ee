"""The joining node against a real CAServer over TLS on 127.0.0.1: join, refusals, files,
renewal (scheduled, on demand, pushed) and eviction."""

from __future__ import annotations

import asyncio
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from test_caserver_harness import LOOPBACK, Creds, closed_port, start_swarm, wait_until

from swarmkit_py.ca import (
    CADigestMismatchError,
    CertRole,
    InvalidJoinTokenError,
    RootCA,
    generate_join_token,
    generate_key_and_csr,
    identity_from_cert,
    load_certificate,
    load_node_credentials,
    parse_join_token,
)
from swarmkit_py.ca.certs import utcnow
from swarmkit_py.ca.files import NODE_CERT_FILE, NODE_KEY_FILE, ROOT_CA_CERT_FILE
from swarmkit_py.rpc import HandlerRegistry
from swarmkit_py.store import NodeAvailability, NodeRole, NodeState, Transaction
from swarmkit_py.worker.certs import CertRenewer, NodeEvictedError, RenewError
from swarmkit_py.worker.join import (
    AlreadyJoinedError,
    JoinError,
    JoinRejectedError,
    ManagerUnreachableError,
    join,
    parse_address,
)


@pytest.fixture
async def swarm():
    s = await start_swarm()
    yield s
    await s.stop()


def node_files(state_dir):
    return sorted(p.name for p in state_dir.iterdir()) if state_dir.exists() else []


async def test_worker_token_gives_worker_cert_and_node_in_store(swarm, tmp_path):
    state = tmp_path / "node"
    result = await join(swarm.addr, swarm.worker_token, state, "host-a", "127.0.0.1:2377")

    assert result.role is NodeRole.WORKER
    assert result.cluster_id == swarm.cluster_id
    assert len(result.node_id) == 25
    assert [(m.node_id, m.addr) for m in result.managers] == [(swarm.manager_id, swarm.addr)]

    cert_pem, key_pem = load_node_credentials(state)  # also checks key and cert match
    ident = identity_from_cert(cert_pem)
    assert (ident.node_id, ident.role, ident.cluster_id) == (
        result.node_id, CertRole.WORKER, swarm.cluster_id,
    )
    san = load_certificate(cert_pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    swarm.root.verify(cert_pem, now=utcnow())
    assert (state / ROOT_CA_CERT_FILE).read_bytes() == swarm.root.cert_pem

    node = swarm.node(result.node_id)
    assert node is not None
    assert node.spec.role is NodeRole.WORKER and node.role is NodeRole.WORKER
    assert node.spec.availability is NodeAvailability.ACTIVE
    assert node.status.state is NodeState.UNKNOWN and node.status.addr == "127.0.0.1"
    assert node.description.hostname == "host-a"
    assert node.certificate.role is NodeRole.WORKER
    assert node.certificate.cn == result.node_id
    assert node.certificate.certificate == cert_pem.decode()
    assert swarm.calls["ca.root"] == 1 and swarm.calls["ca.join"] == 1


async def test_a_key_made_in_a_child_process_joins_the_same(swarm, tmp_path):
    """`key_and_csr=in_child` (what a worker's waiting agent uses): the child's key is the one
    the certificate is for, and nothing but the node's three files is left."""
    from swarmkit_py.ca.newkey import in_child

    state = tmp_path / "node"
    result = await join(swarm.addr, swarm.worker_token, state, "host-c", "127.0.0.1", key_and_csr=in_child)
    cert_pem, key_pem = load_node_credentials(state)  # checks that key and certificate match
    assert identity_from_cert(cert_pem).node_id == result.node_id and result.role is NodeRole.WORKER
    assert node_files(state) == sorted([NODE_CERT_FILE, NODE_KEY_FILE, ROOT_CA_CERT_FILE])
    assert stat.S_IMODE((state / NODE_KEY_FILE).stat().st_mode) == 0o600


async def test_a_key_child_that_fails_is_a_join_error_and_nothing_is_sent(swarm, tmp_path, monkeypatch):
    from swarmkit_py.ca import newkey

    monkeypatch.setattr(newkey.sys, "executable", "/bin/false")
    with pytest.raises(JoinError, match=r"making this node's key failed \(/bin/false -m swarmkit_py.ca.newkey, exit 1\)"):
        await join(swarm.addr, swarm.worker_token, tmp_path / "n", "h", "127.0.0.1", key_and_csr=newkey.in_child)
    assert swarm.calls["ca.join"] == 0 and node_files(tmp_path / "n") == []
    monkeypatch.setattr(newkey.sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(JoinError, match=r"cannot start '.*no-python' to make this node's key"):
        await join(swarm.addr, swarm.worker_token, tmp_path / "n", "h", "127.0.0.1", key_and_csr=newkey.in_child)
    assert swarm.calls["ca.join"] == 0 and node_files(tmp_path / "n") == []


def _forge(swarm, how):
    """A ca.join handler that answers with a certificate the joining node must refuse."""
    real = swarm.server.handlers.requests["ca.join"]

    async def forged(peer, params):
        answer = dict(await real(peer, params))
        node_id = identity_from_cert(answer["cert"].encode()).node_id
        if how == "another CA":
            cert = RootCA.create().issue_node_certificate(params["csr"], node_id, CertRole.WORKER, swarm.cluster_id)
        elif how == "another key":
            cert = swarm.root.issue_node_certificate(generate_key_and_csr()[1], node_id, CertRole.WORKER,
                                                     swarm.cluster_id)
        elif how == "a client role":
            cert = swarm.root.issue_client_certificate(params["csr"], "not-a-node", swarm.cluster_id)
        elif how == "two certificates":
            answer["cert"] += swarm.root.cert_pem.decode()
            return answer
        else:
            return {"cert": 42}
        answer["cert"] = cert.cert_pem.decode()
        return answer

    swarm.server.handlers.requests["ca.join"] = forged


@pytest.mark.parametrize(("how", "says"), [
    ("another CA", "sent an unusable certificate: certificate was not issued by this root CA"),
    ("another key", "sent an unusable certificate"),
    ("a client role", "not a node one"),
    ("two certificates", "sent an unusable certificate: not a PEM of exactly one certificate"),
    ("no certificate", "sent a malformed join answer"),
])
async def test_an_answer_the_ca_does_not_vouch_for_is_refused_and_nothing_written(swarm, tmp_path, how, says):
    """Step 6: a manager (or whoever holds a manager certificate) answering with a certificate
    of another CA, for another key, or of a role that is not a node's, joins nobody; the node
    keeps no key, certificate or CA."""
    _forge(swarm, how)
    with pytest.raises(JoinError, match=says):
        await join(swarm.addr, swarm.worker_token, tmp_path / "n", "h", "127.0.0.1")
    assert swarm.calls["ca.join"] == 1 and node_files(tmp_path / "n") == []


@pytest.mark.parametrize("role", ["worker", None])
async def test_a_waiting_agent_joins_as_a_worker_without_loading_cryptography(swarm, tmp_path, role):
    """A worker's agent never loads `cryptography` (~8.5 MB of RSS; ca/sslfacts.py), also when
    it runs the join itself on the deploy toolkit's request (agent/enroll.py): the key is made
    in a child process (ca/newkey.py). Run in a fresh interpreter, as the agent is; paramiko
    is blocked as on hosts (test_metrics_server.py says why)."""
    import sys

    state = tmp_path / "state"
    req = {"op": "join", "manager": swarm.addr, "token": swarm.worker_token, "role": role}
    code = ("import asyncio, io, sys; sys.modules['paramiko'] = None\n"
            "import swarmkit_py.agent.agent\n"
            "from swarmkit_py.agent import enroll\n"
            "from swarmkit_py.agent.config import AgentConfig\n"
            f"cfg = AgentConfig(state_dir={str(state)!r}, advertise_addr='127.0.0.1:2377', hostname='w1')\n"
            "out, err = io.StringIO(), io.StringIO()\n"
            f"rc = asyncio.run(enroll.serve(cfg, {req!r}, out, err))\n"
            "print(rc, repr(err.getvalue()), sorted(m for m in sys.modules if m.startswith('cryptography'))[:3])\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}  # this tree's swarmkit_py
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode, out.decode().strip()) == (0, "0 '' []"), err.decode()[-2000:]
    from swarmkit_py.agent.state import LocalNode, certs_dir

    node = LocalNode.load(state)
    assert node.role == "worker" and swarm.node(node.node_id).role is NodeRole.WORKER
    cert_pem, _ = load_node_credentials(certs_dir(state))
    assert identity_from_cert(cert_pem).node_id == node.node_id


async def test_key_is_0600_and_state_dir_private(swarm, tmp_path):
    state = tmp_path / "node"
    await join(swarm.addr, swarm.worker_token, state, "host-a", "127.0.0.1")
    assert stat.S_IMODE((state / NODE_KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / NODE_CERT_FILE).stat().st_mode) == 0o644
    # atomic writes leave no temp files behind
    assert node_files(state) == sorted([NODE_CERT_FILE, NODE_KEY_FILE, ROOT_CA_CERT_FILE])


async def test_manager_token_gives_manager_role(swarm, tmp_path):
    result = await join(
        swarm.addr, swarm.manager_token, tmp_path / "m", "host-m", "127.0.0.1",
        availability="drain",
    )
    assert result.role is NodeRole.MANAGER
    cert_pem, _ = load_node_credentials(tmp_path / "m")
    assert identity_from_cert(cert_pem).role is CertRole.MANAGER
    node = swarm.node(result.node_id)
    assert node.spec.role is NodeRole.MANAGER and node.role is NodeRole.MANAGER
    assert node.spec.availability is NodeAvailability.DRAIN


async def test_wrong_token_refused_and_nothing_written(swarm, tmp_path):
    # Right CA digest (passes the client-side check), wrong secret.
    wrong = generate_join_token(swarm.root.cert_pem)
    secret = parse_join_token(wrong).secret
    before = (swarm.store.applied_index, swarm.store.view().count("node"))

    with pytest.raises(JoinRejectedError) as err:
        await join(swarm.addr, wrong, tmp_path / "n", "host-x", "127.0.0.1")

    assert err.value.code == "invalid_join_token"
    assert "invalid join token" in str(err.value)
    assert secret not in str(err.value)
    assert (swarm.store.applied_index, swarm.store.view().count("node")) == before
    assert not (tmp_path / "n" / NODE_CERT_FILE).exists()
    assert not (tmp_path / "n" / NODE_KEY_FILE).exists()


async def test_rotated_token_refused_new_one_accepted(swarm, tmp_path):
    joined = await join(swarm.addr, swarm.worker_token, tmp_path / "a", "a", "127.0.0.1")
    old, new = await swarm.rotate("worker")
    nodes_before = swarm.store.view().count("node")

    with pytest.raises(JoinRejectedError) as err:
        await join(swarm.addr, old, tmp_path / "b", "b", "127.0.0.1")
    assert err.value.code == "invalid_join_token"
    assert "rotated" in str(err.value)
    assert swarm.store.view().count("node") == nodes_before

    result = await join(swarm.addr, new, tmp_path / "c", "c", "127.0.0.1")
    assert result.role is NodeRole.WORKER
    # the manager token was not touched by rotating the worker token
    assert (await join(swarm.addr, swarm.manager_token, tmp_path / "d", "d", "127.0.0.1")).role \
        is NodeRole.MANAGER
    # nodes that joined before the rotation are undisturbed: their cert still renews
    renewed = await CertRenewer(tmp_path / "a", [swarm.addr]).renew_once()
    assert renewed.node_id == joined.node_id


async def test_ca_digest_mismatch_refused_before_token_or_csr_sent(swarm, tmp_path):
    other_ca = RootCA.create()
    token = generate_join_token(other_ca.cert_pem)  # names a different CA
    before = swarm.store.applied_index

    with pytest.raises(CADigestMismatchError) as err:
        await join(swarm.addr, token, tmp_path / "n", "host", "127.0.0.1")

    assert "does not match the join token" in str(err.value)
    assert swarm.calls["ca.root"] == 1
    assert swarm.calls["ca.join"] == 0  # the token and CSR never left the node
    assert swarm.store.applied_index == before
    assert node_files(tmp_path / "n") == []


async def test_a_second_ca_riding_along_with_the_named_one_is_refused_before_the_token_is_sent(swarm, tmp_path):
    """ca.root is asked without verifying the peer: whoever answers may append a CA of its own
    to the one the token names. OpenSSL trusts every certificate of a PEM, so that CA would
    then vouch for the "manager" the token and CSR go to. The join trusts exactly the named
    certificate: such an answer stops it before anything secret is sent."""
    real = swarm.server.handlers.requests["ca.root"]
    evil = RootCA.create()

    async def two_cas(peer, params):
        answer = dict(await real(peer, params))
        answer["ca_cert"] = answer["ca_cert"] + evil.cert_pem.decode()
        return answer

    swarm.server.handlers.requests["ca.root"] = two_cas
    with pytest.raises(CADigestMismatchError, match="unreadable CA certificate.*not a PEM of exactly one certificate"):
        await join(swarm.addr, swarm.worker_token, tmp_path / "n", "host", "127.0.0.1")
    assert swarm.calls["ca.join"] == 0 and node_files(tmp_path / "n") == []


async def test_malformed_token_is_refused_without_any_traffic(swarm, tmp_path):
    with pytest.raises(InvalidJoinTokenError) as err:
        await join(swarm.addr, "SWMTKN-1-abc-def", tmp_path / "n", "h", "127.0.0.1")
    assert str(err.value).startswith("invalid join token: ")
    assert sum(swarm.calls.values()) == 0


async def test_unreachable_manager_names_address_and_what_to_check(tmp_path):
    port = closed_port()
    token = generate_join_token(RootCA.create().cert_pem)
    with pytest.raises(ManagerUnreachableError) as err:
        await join(f"{LOOPBACK}:{port}", token, tmp_path / "n", "h", "127.0.0.1", timeout=5)
    msg = str(err.value)
    assert f"{LOOPBACK}:{port}" in msg
    assert "agent is running" in msg and "firewall" in msg
    assert node_files(tmp_path / "n") == []


async def test_joining_twice_with_the_same_state_dir_is_refused(swarm, tmp_path):
    await join(swarm.addr, swarm.worker_token, tmp_path / "n", "h", "127.0.0.1")
    nodes = swarm.store.view().count("node")
    with pytest.raises(AlreadyJoinedError):
        await join(swarm.addr, swarm.worker_token, tmp_path / "n", "h", "127.0.0.1")
    assert swarm.store.view().count("node") == nodes


def test_parse_address():
    assert parse_address("10.0.0.1") == ("10.0.0.1", 2377)
    assert parse_address("10.0.0.1:4000") == ("10.0.0.1", 4000)
    assert parse_address("[::1]:4000") == ("::1", 4000)
    assert parse_address("mgr.example") == ("mgr.example", 2377)
    with pytest.raises(Exception, match="invalid port"):
        parse_address("10.0.0.1:http")


# -- renewal --------------------------------------------------------------------------------


async def test_renew_keeps_node_id_and_key_and_picks_up_role_change(swarm, tmp_path):
    state = tmp_path / "n"
    joined = await join(swarm.addr, swarm.worker_token, state, "h", "127.0.0.1")
    first_cert, key = load_node_credentials(state)
    renewer = CertRenewer(state, [swarm.addr])

    same = await renewer.renew_once()
    assert (same.node_id, same.role) == (joined.node_id, NodeRole.WORKER)
    assert same.cert_pem != first_cert

    await swarm.set_role(joined.node_id, NodeRole.MANAGER)  # promote
    promoted = await renewer.renew_once()
    assert (promoted.node_id, promoted.role) == (joined.node_id, NodeRole.MANAGER)
    cert_pem, key_after = load_node_credentials(state)
    assert key_after == key
    ident = identity_from_cert(cert_pem)
    assert (ident.node_id, ident.role) == (joined.node_id, CertRole.MANAGER)
    san = load_certificate(cert_pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert "127.0.0.1" in [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    assert swarm.node(joined.node_id).certificate.role is NodeRole.MANAGER

    await swarm.set_role(joined.node_id, NodeRole.WORKER)  # demote
    assert (await renewer.renew_once()).role is NodeRole.WORKER


async def test_removed_node_cannot_renew(swarm, tmp_path):
    joined = await join(swarm.addr, swarm.worker_token, tmp_path / "n", "h", "127.0.0.1")
    await swarm.proposer.propose(Transaction().delete("node", joined.node_id))
    with pytest.raises(NodeEvictedError) as err:
        await CertRenewer(tmp_path / "n", [swarm.addr]).renew_once()
    assert err.value.code == "not_found"
    assert "join again" in str(err.value)


async def test_renew_tries_the_next_manager_when_one_is_down(swarm, tmp_path):
    await join(swarm.addr, swarm.worker_token, tmp_path / "n", "h", "127.0.0.1")
    dead = f"{LOOPBACK}:{closed_port()}"
    renewer = CertRenewer(tmp_path / "n", [dead, swarm.addr], call_timeout=5)
    assert (await renewer.renew_once()).role is NodeRole.WORKER
    with pytest.raises(RenewError, match=dead):
        await CertRenewer(tmp_path / "n", [dead], call_timeout=5).renew_once()


async def test_loop_renews_when_the_drawn_point_is_reached(swarm, tmp_path):
    await join(swarm.addr, swarm.worker_token, tmp_path / "n", "h", "127.0.0.1")
    renewed = []
    renewer: CertRenewer

    def clock():
        # 85 of 90 days in until the first renewal: past any point in [50%, 80%].
        return utcnow() + (timedelta(days=85) if renewer.renewals == 0 else timedelta(0))

    renewer = CertRenewer(tmp_path / "n", [swarm.addr], clock=clock, on_renewed=renewed.append)
    task = asyncio.create_task(renewer.run())
    try:
        await wait_until(lambda: renewed, what="scheduled renewal")
        # the new cert's renewal point is a fresh draw, in the future again
        due = renewer.next_renewal()
        assert utcnow() + timedelta(days=44) < due < utcnow() + timedelta(days=73)
        await asyncio.sleep(0)  # the loop is now parked until `due`
        assert renewer.renewals == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_role_change_is_pushed_and_renewed_on_demand(swarm, tmp_path):
    state = tmp_path / "n"
    joined = await join(swarm.addr, swarm.worker_token, state, "h", "127.0.0.1")
    cert_pem, key_pem = load_node_credentials(state)
    renewer = CertRenewer(state, [swarm.addr])
    handlers = HandlerRegistry()
    renewer.install_push_handler(handlers)

    session = swarm.client(Creds(cert_pem, key_pem), handlers=handlers)  # a dispatcher session
    await session.connect()
    await wait_until(lambda: len(swarm.server.connections) == 1, what="session accepted")
    loop_task = asyncio.create_task(renewer.run())
    watch_task = asyncio.create_task(swarm.caserver.watch_role_changes())
    try:
        await asyncio.sleep(0)
        await swarm.set_role(joined.node_id, NodeRole.MANAGER)

        def cert_role():
            return identity_from_cert((state / NODE_CERT_FILE).read_bytes()).role

        await wait_until(lambda: renewer.renewals == 1, what="pushed renewal")
        assert cert_role() is CertRole.MANAGER
        assert await swarm.caserver.push_renew(joined.node_id) == 1
        assert await swarm.caserver.push_renew("nobody") == 0
    finally:
        for t in (loop_task, watch_task):
            t.cancel()
        await asyncio.gather(loop_task, watch_task, return_exceptions=True)
        await session.close()


async def test_notice_role_requests_renewal_only_on_mismatch(swarm, tmp_path):
    await join(swarm.addr, swarm.worker_token, tmp_path / "n", "h", "127.0.0.1")
    renewer = CertRenewer(tmp_path / "n", [swarm.addr])
    assert renewer.notice_role("worker") is False
    assert renewer.notice_role(NodeRole.MANAGER) is True
