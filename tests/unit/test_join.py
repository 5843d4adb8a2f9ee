"""The joining node against a real CAServer over TLS on 127.0.0.1: join, refusals, files,
renewal (scheduled, on demand, pushed) and eviction."""

from __future__ import annotations

import asyncio
import stat
from datetime import timedelta

import pytest
from cryptography import x509
from test_caserver_harness import LOOPBACK, Creds, closed_port, start_swarm, wait_until

from swarmkit_py.ca import (
    CADigestMismatchError,
    CertRole,
    InvalidJoinTokenError,
    RootCA,
    generate_join_token,
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
