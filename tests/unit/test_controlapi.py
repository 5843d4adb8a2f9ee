"""ControlAPI rules over a LocalProposer store and a fake Raft membership."""

from __future__ import annotations

import pytest

from swarmkit_py.ca import ca_digest, parse_join_token
from swarmkit_py.manager.context import RaftMember
from swarmkit_py.manager.controlapi import (
    LAST_MANAGER_MESSAGE,
    QUORUM_LOSS_MESSAGE,
    FailedPrecondition,
    InvalidArgument,
    NotInSwarm,
    can_remove_member,
)
from swarmkit_py.store import Ambiguous, NodeState, NotFound, SequenceError, Transaction
from tests.unit.test_controlapi_fixtures import make_swarm


def spec_of(node, **changes):
    spec = node.spec.to_api()
    spec.update(changes)
    return spec


async def demote(s, node_id):
    node = s.node(node_id)
    return await s.control.update_node(node_id, node.version.index, spec_of(node, Role="worker"))


# -- quorum arithmetic ----------------------------------------------------------------------


def members(*reachable: bool, voters=None):
    voters = voters or [True] * len(reachable)
    return [
        RaftMember(i + 1, f"n{i + 1}", f"a{i + 1}", v, r, i == 0)
        for i, (r, v) in enumerate(zip(reachable, voters, strict=True))
    ]


@pytest.mark.parametrize(
    "reachable, leaving, ok",
    [
        ((True, True, True), "n2", True),  # 3 -> 2, both up
        ((True, True, False), "n2", False),  # 3 -> 2 with one down: 1 of 2
        ((True, True, False), "n3", True),  # removing the down one: 2 of 2
        ((True,), "n1", False),  # last voter
        ((True, True, True, True, False), "n2", True),  # 5 -> 4 with one down: 3 of 4
        ((True, True, True, False, False), "n2", False),  # 5 -> 4 with two down: 2 of 4
        ((True, True), "nobody", True),  # not a member
    ],
)
def test_can_remove_member(reachable, leaving, ok):
    assert can_remove_member(members(*reachable), leaving) is ok


def test_learners_do_not_count():
    ms = members(True, True, False, voters=[True, True, False])
    assert can_remove_member(ms, "n3")  # a learner can always go
    assert can_remove_member(ms, "n2")  # the unreachable learner is not a remaining voter
    ms = members(True, False, True, voters=[True, True, False])
    assert not can_remove_member(ms, "n1")  # a reachable learner does not make a quorum


# -- nodes: reads ---------------------------------------------------------------------------


async def test_list_nodes_overlays_live_manager_status():
    s = make_swarm(3, 2)
    s.ctx.set_member(s.managers[2], reachable=False)
    nodes = {n.id: n for n in await s.control.list_nodes()}
    leader = nodes[s.managers[0]].manager_status
    assert leader.leader is True and leader.reachability == "reachable"
    assert leader.addr == "127.0.0.1:2377"
    assert nodes[s.managers[1]].manager_status.leader is False
    assert nodes[s.managers[2]].manager_status.reachability == "unreachable"
    assert all(nodes[w].manager_status is None for w in s.workers)
    # The overlay is a copy: the stored objects are untouched.
    assert s.node(s.managers[0]).manager_status is None


async def test_get_node_by_id_hostname_prefix_and_errors():
    s = make_swarm(3, 2)
    w1 = s.workers[0]
    assert (await s.control.get_node(w1)).id == w1
    assert (await s.control.get_node("w1")).id == w1
    assert (await s.control.get_node(w1[:12])).id == w1
    with pytest.raises(NotFound, match="node nosuch not found"):
        await s.control.get_node("nosuch")
    with pytest.raises(NotFound):
        await s.control.get_node("")
    # Two hosts may share a hostname; the reference is then ambiguous, not a guess.
    dup = s.node(w1).clone()
    dup.id = "z" * 25
    s.store.apply(10, Transaction().create(dup).encode())
    with pytest.raises(Ambiguous):
        await s.control.get_node("w1")


async def test_list_nodes_filters():
    s = make_swarm(3, 2)

    async def ids(**filters):
        return {n.id for n in await s.control.list_nodes(filters)}

    assert await ids(role=["manager"]) == set(s.managers)
    assert await ids(role=["worker"]) == set(s.workers)
    assert await ids(role=["worker", "manager"]) == set(s.managers + s.workers)
    assert await ids(name=["w"]) == set(s.workers)  # prefix
    assert await ids(id=[s.workers[0][:10]]) == {s.workers[0]}
    assert await ids(label=["zone=m"]) == set(s.managers)  # engine labels
    assert await ids(label=["zone"]) == set(s.managers + s.workers)
    assert await ids(membership=["accepted"]) == set(s.managers + s.workers)
    assert await ids(membership=["pending"]) == set()
    assert await ids(role=["manager"], name=["m1"]) == {s.managers[0]}  # AND across keys
    with pytest.raises(InvalidArgument, match="Invalid filter 'bogus'"):
        await s.control.list_nodes({"bogus": ["x"]})
    with pytest.raises(InvalidArgument, match="Invalid role filter"):
        await s.control.list_nodes({"role": ["boss"]})


# -- nodes: promote / demote ----------------------------------------------------------------


async def test_demote_with_three_reachable_managers_is_allowed():
    s = make_swarm(3, 2)
    m2 = s.managers[1]
    node = await demote(s, m2)
    assert node.spec.role == "worker"
    assert s.node(m2).spec.role == "worker"
    # Only the desired role changed: the role manager does the Raft side.
    assert s.node(m2).role == "manager"


async def test_demote_refused_when_remaining_managers_lose_quorum():
    s = make_swarm(3, 2)
    s.ctx.set_member(s.managers[2], reachable=False)
    before = s.snapshot()
    with pytest.raises(FailedPrecondition) as err:
        await demote(s, s.managers[1])
    assert err.value.message == QUORUM_LOSS_MESSAGE
    assert s.snapshot() == before
    # Demoting the unreachable one is fine: 2 of the remaining 2 are up.
    await demote(s, s.managers[2])


async def test_demote_last_manager_refused():
    s = make_swarm(1, 2)
    with pytest.raises(FailedPrecondition) as err:
        await demote(s, s.managers[0])
    assert err.value.message == LAST_MANAGER_MESSAGE


async def test_second_demotion_of_two_out_of_three_is_refused():
    s = make_swarm(3, 0)
    await demote(s, s.managers[1])
    # The role manager removed m2's member...
    s.ctx.drop_member(s.managers[1])
    # ...so demoting m3 leaves m1 alone: allowed by quorum (1 of 1) and m1 is still a manager.
    await demote(s, s.managers[2])
    s.ctx.drop_member(s.managers[2])
    with pytest.raises(FailedPrecondition, match="last manager"):
        await demote(s, s.managers[0])


async def test_demotion_bumps_cluster_version_so_concurrent_ones_conflict():
    s = make_swarm(3, 0)
    before = s.cluster().version.index
    await demote(s, s.managers[1])
    assert s.cluster().version.index > before


async def test_promote_sets_desired_role_only():
    s = make_swarm(1, 2)
    w1 = s.workers[0]
    node = s.node(w1)
    cluster_version = s.cluster().version.index
    await s.control.update_node(w1, node.version.index, spec_of(node, Role="manager"))
    assert s.node(w1).spec.role == "manager"
    assert s.node(w1).role == "worker"
    assert s.cluster().version.index == cluster_version  # no guard needed to add a manager


async def test_demoting_a_not_yet_joined_manager_just_reverts_the_wish():
    s = make_swarm(3, 1)
    w1 = s.workers[0]
    node = s.node(w1)
    await s.control.update_node(w1, node.version.index, spec_of(node, Role="manager"))
    s.ctx.set_member(s.managers[1], reachable=False)
    s.ctx.set_member(s.managers[2], reachable=False)
    node = s.node(w1)
    # Not a Raft member: changing its wish back costs no quorum.
    await s.control.update_node(w1, node.version.index, spec_of(node, Role="worker"))


async def test_update_availability_and_labels_key_case_insensitive():
    s = make_swarm(1, 1)
    w1 = s.workers[0]
    v = s.node(w1).version.index
    await s.control.update_node(
        w1, v, {"labels": {"a": "b"}, "role": "Worker", "AVAILABILITY": "drain", "Junk": 1}
    )
    node = s.node(w1)
    assert node.spec.availability == "drain"
    assert node.spec.labels == {"a": "b"}
    assert "Junk" not in node.spec.to_api()


async def test_update_node_stale_version_is_out_of_sequence():
    s = make_swarm(1, 1)
    w1 = s.workers[0]
    node = s.node(w1)
    await s.control.update_node(w1, node.version.index, spec_of(node, Availability="pause"))
    before = s.snapshot()
    with pytest.raises(SequenceError, match="update out of sequence"):
        await s.control.update_node(w1, node.version.index, spec_of(node, Availability="drain"))
    assert s.snapshot() == before


@pytest.mark.parametrize(
    "spec, message",
    [
        ([], "expected a JSON object, got array"),
        ({"Role": "boss"}, "invalid Role: 'boss'"),
        ({"Availability": 3}, "invalid Availability: 3"),
        ({"Labels": {"a": 1}}, "Labels.a"),
        ({"Labels": "x"}, "Labels"),
    ],
)
async def test_update_node_invalid_spec(spec, message):
    s = make_swarm(1, 1)
    before = s.snapshot()
    with pytest.raises(InvalidArgument) as err:
        await s.control.update_node(s.workers[0], 1, spec)
    assert message in err.value.message
    assert s.snapshot() == before


# -- nodes: remove --------------------------------------------------------------------------


async def test_rm_manager_must_be_demoted_first():
    s = make_swarm(3, 0)
    m2 = s.managers[1]
    for force in (False, True):
        with pytest.raises(FailedPrecondition) as err:
            await s.control.remove_node(m2, force=force)
        assert err.value.message == (
            f"node {m2} is a cluster manager and is a member of the raft cluster. "
            "It must be demoted to worker before removal"
        )


async def test_rm_ready_node_needs_force():
    s = make_swarm(1, 2)
    w1 = s.workers[0]
    with pytest.raises(FailedPrecondition) as err:
        await s.control.remove_node("w1")
    assert err.value.message == f"node {w1} is not down and can't be removed"
    await s.control.remove_node("w1", force=True)
    assert s.node(w1) is None


async def test_rm_down_worker_without_force():
    s = make_swarm(1, 2)
    w2 = s.workers[1]
    down = s.node(w2).clone()
    down.status.state = NodeState.DOWN
    s.proposer.store.apply(50, Transaction().update(down).encode())
    await s.control.remove_node(w2)
    assert s.node(w2) is None


async def test_force_rm_of_a_down_manager_deletes_it_for_the_role_manager():
    s = make_swarm(3, 0)
    m3 = s.managers[2]
    s.ctx.set_member(m3, reachable=False)
    await s.control.remove_node(m3, force=True)
    assert s.node(m3) is None  # the role manager removes members whose node is gone


async def test_force_rm_of_a_down_manager_refused_without_quorum():
    s = make_swarm(3, 0)
    s.ctx.set_member(s.managers[1], reachable=False)
    s.ctx.set_member(s.managers[2], reachable=False)
    # 1 of 2 remaining reachable: no quorum either way; refuse rather than pretend.
    with pytest.raises(FailedPrecondition, match="loss of quorum"):
        await s.control.remove_node(s.managers[2], force=True)


async def test_rm_unknown_node():
    s = make_swarm(1, 0)
    with pytest.raises(NotFound):
        await s.control.remove_node("nosuch", force=True)


# -- cluster --------------------------------------------------------------------------------


async def rotate(s, worker=False, manager=False):
    c = s.cluster()
    return await s.control.update_cluster(
        c.version.index, c.spec.to_api(), rotate_worker_token=worker, rotate_manager_token=manager
    )


async def test_rotate_worker_token_only():
    s = make_swarm(1, 0)
    old = s.cluster().join_tokens
    await rotate(s, worker=True)
    new = s.cluster().join_tokens
    assert new.worker != old.worker and new.manager == old.manager
    assert parse_join_token(new.worker).ca_digest == parse_join_token(old.worker).ca_digest
    assert parse_join_token(new.worker).ca_digest == ca_digest(s.root_ca.cert_pem)


async def test_rotate_manager_token_only():
    s = make_swarm(1, 0)
    old = s.cluster().join_tokens
    await rotate(s, manager=True)
    new = s.cluster().join_tokens
    assert new.manager != old.manager and new.worker == old.worker
    assert parse_join_token(new.manager).ca_digest == parse_join_token(old.manager).ca_digest


async def test_update_cluster_spec_and_stale_version():
    s = make_swarm(1, 0)
    c = s.cluster()
    spec = c.spec.to_api()
    del spec["Orchestration"]
    spec["orchestration"] = {"taskHistoryRetentionLimit": 3}  # any key case, as Go reads it
    await s.control.update_cluster(c.version.index, spec)
    assert s.cluster().spec.orchestration.task_history_retention_limit == 3
    assert s.cluster().join_tokens == c.join_tokens
    with pytest.raises(SequenceError):
        await s.control.update_cluster(c.version.index, spec)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"Name": "other"}, "modification of cluster name is not allowed"),
        ({"CAConfig": {"NodeCertExpiry": 60 * 10**9}}, "minimum certificate expiry time"),
        ({"Dispatcher": {"HeartbeatPeriod": -1}}, "negative duration"),
        ({"Raft": {"ElectionTick": "ten"}}, "Raft.ElectionTick"),
        ({"Labels": ["a"]}, "Labels"),
    ],
)
async def test_update_cluster_invalid(change, message):
    s = make_swarm(1, 0)
    c = s.cluster()
    spec = c.spec.to_api() | change
    before = s.snapshot()
    with pytest.raises(InvalidArgument, match=message):
        await s.control.update_cluster(c.version.index, spec)
    assert s.snapshot() == before


async def test_autolock_creates_rotates_and_erases_the_unlock_key():
    s = make_swarm(1, 0)
    assert await s.control.get_unlock_key() == ""
    spec = s.cluster().spec.to_api() | {"EncryptionConfig": {"AutoLockManagers": True}}
    await s.control.update_cluster(s.cluster().version.index, spec)
    key = await s.control.get_unlock_key()
    assert key.startswith("SWMKEY-1-")
    assert key not in str(s.cluster().to_api())  # only /swarm/unlockkey hands it out
    await s.control.update_cluster(s.cluster().version.index, spec)
    assert await s.control.get_unlock_key() == key  # a plain update keeps it
    await s.control.update_cluster(s.cluster().version.index, spec, rotate_manager_unlock_key=True)
    rotated = await s.control.get_unlock_key()
    assert rotated.startswith("SWMKEY-1-") and rotated != key
    off = spec | {"EncryptionConfig": {"AutoLockManagers": False}}
    await s.control.update_cluster(s.cluster().version.index, off, rotate_manager_unlock_key=True)
    assert await s.control.get_unlock_key() == ""  # off: no key, and rotation is a no-op


async def test_raft_settings_are_shown_live_and_only_the_swarm_wide_ones_change():
    s = make_swarm(1, 0)
    live = {"SnapshotInterval": 10000, "KeepOldSnapshots": 1, "LogEntriesForSlowFollowers": 2000,
            "ElectionTick": 6, "HeartbeatTick": 2}
    s.ctx.raft_settings = lambda: dict(live)
    info = await s.control.info()
    # the fixture's spec sets the swarm-wide ones (managers apply those); the rest is live
    live |= {"SnapshotInterval": 10000, "LogEntriesForSlowFollowers": 500}
    assert info["Cluster"]["Spec"]["Raft"] == live
    assert info["Cluster"]["Spec"]["EncryptionConfig"] == {"AutoLockManagers": False}
    spec = s.cluster().spec.to_api() | {"Raft": live}
    await s.control.update_cluster(s.cluster().version.index, spec)  # the CLI's round trip
    assert s.cluster().spec.raft.election_tick is None  # per-manager settings are not stored
    assert (await s.control.info())["Cluster"]["Spec"]["Raft"] == live
    before = s.snapshot()
    with pytest.raises(InvalidArgument, match=r"ElectionTick 10 \(runs with 6; agent.yml raft.election_ticks\)"):
        await s.control.update_cluster(
            s.cluster().version.index, spec | {"Raft": live | {"ElectionTick": 10}}
        )
    assert s.snapshot() == before
    # as the SDK's update_swarm sends them: two set, the rest null
    await s.control.update_cluster(s.cluster().version.index, spec | {"Raft": {
        "SnapshotInterval": 5000, "LogEntriesForSlowFollowers": 1200, "KeepOldSnapshots": None,
        "ElectionTick": None, "HeartbeatTick": None}})
    shown = (await s.control.info())["Cluster"]["Spec"]["Raft"]
    assert shown == live | {"SnapshotInterval": 5000, "LogEntriesForSlowFollowers": 1200}
    await s.control.update_cluster(s.cluster().version.index, spec | {"Raft": shown})
    await s.control.update_cluster(s.cluster().version.index, s.cluster().spec.to_api())
    assert (s.cluster().spec.raft.snapshot_interval, s.cluster().spec.raft.log_entries_for_slow_followers) \
        == (5000, 1200)  # a round trip, and an update without a Raft section, keep them


async def test_empty_name_keeps_the_cluster_name():
    s = make_swarm(1, 0)
    c = s.cluster()
    await s.control.update_cluster(c.version.index, {"Labels": {"x": "y"}})
    assert s.cluster().spec.name == "default"
    assert s.cluster().spec.labels == {"x": "y"}


async def test_no_cluster_is_not_in_swarm():
    s = make_swarm(0, 0)
    s.store.apply(5, Transaction().delete("cluster", s.cluster_id).encode())
    with pytest.raises(NotInSwarm):
        await s.control.get_cluster()
    info = await s.control.info()
    assert info["LocalNodeState"] == "inactive"


# -- info -----------------------------------------------------------------------------------


async def test_info_swarm_section():
    s = make_swarm(3, 2)
    s.ctx.set_member(s.managers[2], reachable=False)
    info = await s.control.info()
    assert info["NodeID"] == s.managers[0]
    assert info["NodeAddr"] == "127.0.0.1"
    assert info["LocalNodeState"] == "active"
    assert info["ControlAvailable"] is True
    assert info["Error"] == ""
    assert info["Nodes"] == 5 and info["Managers"] == 3
    assert {m["NodeID"] for m in info["RemoteManagers"]} == set(s.managers)
    cluster = info["Cluster"]
    assert cluster["ID"] == s.cluster_id
    assert "JoinTokens" not in cluster  # /info is not where tokens are handed out
    assert "RootCA" not in cluster  # the CA key stays internal
    assert cluster["TLSInfo"]["TrustRoot"].startswith("-----BEGIN CERTIFICATE-----")
    assert cluster["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"] == 5


async def test_info_reports_no_leader():
    s = make_swarm(3, 0)
    s.ctx.set_member(s.managers[0], reachable=False)
    info = await s.control.info()
    assert "does not have a leader" in info["Error"]
