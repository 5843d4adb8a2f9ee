"""The CA server's RPC surface over real TLS on 127.0.0.1: who may call what, and what a
refused request leaves behind (nothing)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from test_caserver_harness import MANAGER_ONLY, Creds, start_swarm

from swarmkit_py.ca import (
    CertRole,
    RootCA,
    ca_digest_matches,
    generate_join_token,
    generate_key_and_csr,
    identity_from_cert,
    load_certificate,
    parse_join_token,
)
from swarmkit_py.manager.caserver import CAServer, ca_role, node_role
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.proto import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    INVALID_JOIN_TOKEN,
    PERMISSION_DENIED,
    UNAUTHENTICATED,
)
from swarmkit_py.rpc import RpcError, RpcUnavailable
from swarmkit_py.store import CAConfig, NodeRole, Transaction


@pytest.fixture
async def swarm():
    s = await start_swarm()
    yield s
    await s.stop()


def join_params(token: str, **extra):
    _, csr = generate_key_and_csr()
    params = {"token": token, "csr": csr.decode(), "hostname": "h", "addr": "127.0.0.1"}
    params.update(extra)
    return params


async def call(swarm, method, params, creds=None):
    async with swarm.client(creds) as client:
        return await client.call(method, params)


async def test_root_is_anonymous_and_matches_the_token_digest(swarm):
    answer = await call(swarm, "ca.root", {})
    assert ca_digest_matches(swarm.worker_token, answer["ca_cert"])


async def test_manager_only_method_refuses_worker_and_anonymous_callers(swarm):
    worker = swarm.issue(CertRole.WORKER)
    with pytest.raises(RpcError) as err:
        await call(swarm, MANAGER_ONLY, {}, worker)
    assert err.value.code == PERMISSION_DENIED
    assert "swarm-worker" in err.value.message and "swarm-manager" in err.value.message

    with pytest.raises(RpcError) as err:
        await call(swarm, MANAGER_ONLY, {})
    assert err.value.code == UNAUTHENTICATED

    manager = swarm.issue(CertRole.MANAGER, node_id="m" * 25)
    assert await call(swarm, MANAGER_ONLY, {}, manager) == {"caller": "m" * 25}


async def test_cert_from_another_ca_fails_the_handshake_even_though_certs_are_optional(swarm):
    foreign = swarm.issue(CertRole.MANAGER, root=RootCA.create())
    with pytest.raises(RpcUnavailable):
        await call(swarm, MANAGER_ONLY, {}, foreign)
    assert swarm.calls[MANAGER_ONLY] == 0


async def test_renew_requires_a_certificate(swarm):
    with pytest.raises(RpcError) as err:
        await call(swarm, "ca.renew", {})
    assert err.value.code == UNAUTHENTICATED


async def test_renew_refuses_a_client_certificate(swarm):
    # An operator's API certificate (role swarm-client) must not be turned into a node cert.
    key_pem, csr = generate_key_and_csr()
    issued = swarm.root.issue_client_certificate(csr, "operator", swarm.cluster_id)
    with pytest.raises(RpcError) as err:
        await call(swarm, "ca.renew", {}, Creds(issued.cert_pem, key_pem))
    assert err.value.code == PERMISSION_DENIED


async def test_bad_token_is_refused_before_the_csr_is_looked_at(swarm):
    before = swarm.store.applied_index
    for token in ["", None, 42, "SWMTKN-1-garbage", generate_join_token(swarm.root.cert_pem)]:
        params = join_params("x")
        params["token"] = token
        params["csr"] = "not a csr"  # would be invalid_argument if it were parsed
        with pytest.raises(RpcError) as err:
            await call(swarm, "ca.join", params)
        assert err.value.code == INVALID_JOIN_TOKEN, token
    assert swarm.store.applied_index == before


async def test_refusal_never_echoes_the_secret(swarm):
    token = generate_join_token(swarm.root.cert_pem)
    with pytest.raises(RpcError) as err:
        await call(swarm, "ca.join", join_params(token))
    assert parse_join_token(token).secret not in err.value.message
    assert parse_join_token(token).secret not in str(err.value)


@pytest.mark.parametrize(
    "override",
    [
        {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"},
        {"csr": 7},
        {"csr": "x" * 100_000},
        {"availability": "sometimes"},
        {"hostname": ["a"]},
        {"addr": "not an address!"},
        {"addr": 5},
    ],
)
async def test_invalid_join_params_are_refused_and_nothing_written(swarm, override):
    before = swarm.store.applied_index
    with pytest.raises(RpcError) as err:
        await call(swarm, "ca.join", join_params(swarm.worker_token, **override))
    assert err.value.code == INVALID_ARGUMENT
    assert swarm.store.applied_index == before


async def test_params_must_be_a_map(swarm):
    with pytest.raises(RpcError) as err:
        await call(swarm, "ca.join", ["token"])
    assert err.value.code == INVALID_ARGUMENT


async def test_join_without_addr_uses_the_address_the_caller_came_from(swarm):
    params = join_params(swarm.worker_token)
    del params["addr"]
    answer = await call(swarm, "ca.join", params)
    assert swarm.node(answer["node_id"]).status.addr == "127.0.0.1"


async def test_join_with_dns_advertise_addr_puts_it_in_the_san(swarm):
    answer = await call(swarm, "ca.join", join_params(swarm.worker_token, addr="node-7.lab:2377"))
    cert = load_certificate(answer["cert"])
    dns = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = dns.get_values_for_type(x509.DNSName)
    assert "node-7.lab" in names and answer["node_id"] in names and "swarm-worker" in names
    assert answer["role"] == "worker" and answer["cluster_id"] == swarm.cluster_id


async def test_cluster_cert_expiry_setting_is_honoured(swarm):
    cluster = swarm.cluster().clone()
    cluster.spec.ca_config = CAConfig(node_cert_expiry=int(timedelta(days=7).total_seconds() * 1e9))
    await swarm.proposer.propose(Transaction().update(cluster))
    answer = await call(swarm, "ca.join", join_params(swarm.worker_token))
    cert = load_certificate(answer["cert"])
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=7) <= life <= timedelta(days=7, hours=2)


async def test_uninitialised_swarm_and_keyless_ca_are_failed_preconditions(swarm):
    empty = CAServer(LocalProposer())
    with pytest.raises(RpcError) as err:
        await empty.handle_root(None, {})
    assert err.value.code == FAILED_PRECONDITION

    keyless = CAServer(swarm.proposer, lambda: swarm.root.without_key())
    with pytest.raises(RpcError) as err:
        await keyless.handle_join(None, join_params(swarm.worker_token))
    assert err.value.code == FAILED_PRECONDITION


async def test_renew_signs_the_role_in_the_store_not_the_role_in_the_old_cert(swarm):
    key_pem, csr = generate_key_and_csr()
    params = join_params(swarm.worker_token)
    params["csr"] = csr.decode()
    answer = await call(swarm, "ca.join", params)
    node_id = answer["node_id"]
    creds = Creds(answer["cert"].encode(), key_pem)
    await swarm.set_role(node_id, NodeRole.MANAGER)
    renewed = await call(swarm, "ca.renew", {}, creds)
    assert renewed["role"] == "manager"
    assert identity_from_cert(renewed["cert"]).role is CertRole.MANAGER
    # with a CSR: a fresh key certified, same node id and address SANs
    new_key, new_csr = generate_key_and_csr()
    rekeyed = await call(swarm, "ca.renew", {"csr": new_csr.decode()}, creds)
    ident = identity_from_cert(rekeyed["cert"])
    assert (ident.node_id, ident.role) == (node_id, CertRole.MANAGER)
    assert rekeyed["cert"] != renewed["cert"]


def test_role_mapping_both_ways():
    assert ca_role("manager") is CertRole.MANAGER and ca_role(CertRole.WORKER) is CertRole.WORKER
    assert ca_role(NodeRole.WORKER) is CertRole.WORKER
    assert node_role("swarm-manager") is NodeRole.MANAGER and node_role("worker") is NodeRole.WORKER
