"""Named situations, built by hand on the same harness as the random schedules: each one
exercises one mechanism of the core end to end and says what must (not) happen."""

from __future__ import annotations

import pytest

from swarmkit_py.raft.core import URGENT
from swarmkit_py.raft.errors import NotLeader, ProposalDropped
from swarmkit_py.raft.types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    Message,
    MsgType,
    RaftRole,
)
from tests.sim.harness import Cluster

ET = 10  # election_tick of these clusters


def settled(n: int = 3, **kw) -> Cluster:
    """A cluster of `n` with member 1 leading and everyone caught up."""
    c = Cluster(n, election_tick=ET, **kw)
    c.elect(1)
    c.tick_all(3)
    return c


def test_pre_vote_keeps_a_healed_follower_from_disrupting_the_leader():
    c = settled(3)
    term = c.core(1).term
    c.isolate(3)
    c.tick_all(5 * ET)  # 3 times out again and again while cut off
    assert c.core(3).term == term, "pre-vote must not raise the term of a cut-off member"
    assert c.core(3).role in (RaftRole.PRE_CANDIDATE, RaftRole.FOLLOWER)
    c.heal()
    c.tick_all(3 * ET)
    assert c.leaders() == [1] and c.core(1).term == term
    assert c.core(3).leader == 1 and c.core(3).term == term


def test_without_pre_vote_the_healed_member_does_raise_the_term():
    """The contrast that shows what pre-vote buys."""
    c = settled(3, pre_vote=False)
    term = c.core(1).term
    c.isolate(3)
    c.tick_all(5 * ET)
    assert c.core(3).term > term


def test_members_in_the_leaders_lease_ignore_a_candidate():
    """Check-quorum's other half: a member that heard the leader within an election timeout
    ignores vote requests, so a member that merely lost the leader (here: 5 cannot hear 1 but
    talks to everyone else) cannot depose it, even without pre-vote."""
    c = settled(5, pre_vote=False)
    term = c.core(1).term
    c.blocked |= {(1, 5), (5, 1)}
    c.tick_all(4 * ET)
    assert c.core(5).term > term  # it did campaign
    assert c.leaders() == [1] and all(c.core(n).term == term for n in (1, 2, 3, 4))


def test_check_quorum_steps_down_an_isolated_leader_within_an_election_timeout():
    """The leader checks every election timeout whether a majority answered since the last
    check. Cut off just after a check, it notices at the second one: so it steps down within
    an election timeout of the first check that finds nobody, at most 2 * election_tick ticks
    after losing contact (as etcd-io/raft). Meanwhile it cannot commit or answer reads."""
    c = settled(5)
    c.isolate(1)
    ticks = 0
    while c.core(1).role == RaftRole.LEADER and ticks < 2 * ET:
        c.tick(1)
        ticks += 1
    assert c.core(1).role == RaftRole.FOLLOWER, f"an isolated leader kept leading for {ticks} ticks"
    # meanwhile the majority elects a new leader, and the old one follows it after healing
    c.tick_all(4 * ET, only={2, 3, 4, 5})
    new = c.leaders()
    assert len(new) == 1 and new[0] != 1
    c.heal()
    c.tick_all(2 * ET)
    assert c.core(1).leader == new[0]


def test_leader_transfer_completes_and_drops_proposals_meanwhile():
    c = settled(3)
    c.isolate(2)
    c.propose(1, b"before")  # 2 misses it: the transfer must first catch it up
    c.deliver()
    c.heal()
    c.core(1).transfer_leadership(2)
    with pytest.raises(ProposalDropped):
        c.core(1).propose(b"during")
    with pytest.raises(ProposalDropped):
        c.core(1).propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 9))
    c.nodes[1].drain()
    c.tick_all(3)
    assert c.leaders() == [2]
    assert b"before" in c.applied_values(2)
    with pytest.raises(NotLeader) as e:
        c.core(1).propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 9))
    assert e.value.leader_hint == 2


def test_abandoned_transfer_lets_proposals_through_again():
    c = settled(3)
    c.isolate(2)
    c.core(1).transfer_leadership(2)
    c.nodes[1].drain()
    c.tick_all(ET + 1)
    assert c.leaders() == [1] and not c.core(1).lead_transferee
    c.propose(1, b"after")


def _read(c: Cluster, nid: int, ctx: bytes) -> None:
    c.checker.read_issued(c.nodes[nid], ctx)
    c.nodes[nid].step_urgent(read_ctx=ctx)
    c.nodes[nid].drain()


def test_read_index_on_the_leader_and_via_a_follower():
    c = settled(3)
    c.propose(1, b"w1")
    c.deliver()
    _read(c, 1, b"r-leader")
    _read(c, 3, b"r-follower")
    c.deliver()
    c.tick_all(2)
    assert c.checker.reads_answered >= {b"r-leader", b"r-follower"}
    assert c.checker.reads_ok >= 2
    # the read index covers the acknowledged write
    assert c.nodes[1].fsm.applied >= c.checker.max_commit - 1


def test_read_index_waits_until_the_new_leader_commits_in_its_term():
    c = settled(3)
    c.propose(1, b"w1")
    c.deliver()
    c.crash(1)
    c.tick_all(ET, only={2, 3}, deliver=False)  # 3 leaves the old leader's lease
    c.drop_all()
    c.campaign(2)
    c.deliver(where=lambda m: m.type != MsgType.APP)  # elected, its no-op not yet replicated
    assert c.core(2).role == RaftRole.LEADER
    _read(c, 2, b"r")
    c.tick_all(2, only={2, 3}, deliver=False)
    c.deliver(hold=lambda m: m.type == MsgType.APP)  # heartbeats answered, no-op still held
    assert b"r" not in c.checker.reads_answered, "read answered before the leader knew the commit index"
    c.tick_all(3, only={2, 3})
    assert b"r" in c.checker.reads_answered


@pytest.mark.parametrize("n", [3, 5])
def test_read_on_a_partitioned_old_leader_is_never_answered(n):
    c = settled(n)
    c.isolate(1)
    _read(c, 1, b"stale")
    c.tick_all(2 * ET)
    assert b"stale" not in c.checker.reads_answered


def test_removed_leader_steps_down_and_the_rest_elect_a_new_one():
    c = settled(3)
    c.core(1).propose_conf_change(ConfChange(ConfChangeType.REMOVE, 1))
    c.nodes[1].drain()
    c.deliver()
    c.tick_all(1)
    assert c.core(1).removed and c.core(1).role == RaftRole.FOLLOWER
    assert 1 not in c.core(1).conf.voters
    c.crash(1)  # a removed member shuts down
    c.tick_all(4 * ET, only={2, 3})
    assert len(c.leaders()) == 1 and c.leaders()[0] in (2, 3)
    ld = c.leaders()[0]
    assert c.core(ld).conf.voters == [2, 3]
    c.propose(ld, b"two-member write")
    c.tick_all(2, only={2, 3})
    assert b"two-member write" in c.applied_values(5 - ld)


def test_learner_gets_the_log_does_not_vote_and_is_promoted():
    c = settled(3)
    for i in range(5):
        c.propose(1, b"w%d" % i)
    c.deliver()
    c.add_node(4)  # joins empty
    c.core(1).propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    c.nodes[1].drain()
    c.tick_all(3)
    assert c.core(4).conf.learners == [4]
    assert c.applied_values(4) >= {b"w%d" % i for i in range(5)}
    # a learner never campaigns, and its vote does not count
    c.tick_all(5 * ET, only={4}, deliver=False)
    assert c.core(4).role == RaftRole.FOLLOWER and c.core(4).term == c.core(1).term
    c.drop_all()
    c.core(4).campaign()
    assert not [m for m in c.queue if m.frm == 4]
    # with 2 of 3 voters gone, the learner's ack cannot commit anything
    c.crash(2)
    c.crash(3)
    before = c.core(1).commit
    c.propose(1, b"needs a voter")
    c.tick_all(3, only={1, 4})
    assert c.core(1).commit == before
    c.restart(2)
    c.restart(3)
    c.tick_all(2 * ET)
    ld = c.leaders()[0]
    c.core(ld).propose_conf_change(ConfChange(ConfChangeType.PROMOTE, 4))
    c.nodes[ld].drain()
    c.tick_all(3)
    assert sorted(c.core(4).conf.voters) == [1, 2, 3, 4] and c.core(4).conf.learners == []
    # now a voter: it can lead
    c.core(ld).transfer_leadership(4)
    c.nodes[ld].drain()
    c.tick_all(3)
    assert c.leaders() == [4]


def test_snapshot_install_to_a_follower_behind_the_compaction_point():
    c = settled(3)
    c.crash(3)
    for i in range(20):
        c.propose(1, b"s%d" % i)
        c.tick_all(1, only={1, 2})
    leader = c.nodes[1]
    snap = leader.core.create_snapshot(leader.fsm.snapshot_data(), keep_entries=2)
    leader.disk.snapshot = snap
    assert leader.core.log.offset > c.nodes[3].disk.last_index()
    c.restart(3)
    sent = []
    c.tick_all(1, deliver=False)
    c.deliver(where=lambda m: sent.append(m.type) or True)
    c.tick_all(3)
    assert MsgType.SNAP in sent, "the leader should have sent a snapshot"
    assert c.nodes[3].disk.snapshot is not None and c.nodes[3].disk.snapshot.meta.index == snap.meta.index
    assert c.applied_values(3) >= {b"s%d" % i for i in range(20)}
    # and it keeps replicating normally afterwards, also across a restart
    c.propose(1, b"after-snap")
    c.tick_all(2)
    assert b"after-snap" in c.applied_values(3)
    c.crash(3)
    c.restart(3)
    # the entry is on its disk; the commit index that moved alone was not written (the
    # driver's MustSync rule), so the member applies it once the leader's heartbeat says so
    assert c.nodes[3].disk.last_index() >= c.core(1).commit
    c.tick_all(2)
    assert b"after-snap" in c.applied_values(3)


def test_conflicting_uncommitted_suffix_is_overwritten():
    c = settled(3)
    # 1 is cut off and takes proposals it can never commit
    c.isolate(1)
    for i in range(4):
        c.propose(1, b"lost%d" % i)
    stale_last = c.core(1).log.last_index()
    c.tick_all(4 * ET, only={2, 3})
    new = c.leaders()
    new = [x for x in new if x != 1]
    assert new
    c.propose(new[0], b"kept")
    c.tick_all(2, only={2, 3})
    c.heal()
    c.tick_all(3 * ET)
    logs = {tuple(c.log_terms(n)) for n in (1, 2, 3)}
    assert len(logs) == 1, "logs did not converge"
    for n in (1, 2, 3):
        assert b"kept" in c.applied_values(n)
        assert not any(v.startswith(b"lost") for v in c.applied_values(n))
        assert all(e.data[:4] != b"lost" for e in c.core(n).log.entries)
    assert stale_last >= 1


def test_a_minority_cannot_commit():
    c = settled(5)
    c.blocked |= {(a, b) for a in (1, 2) for b in (3, 4, 5)} | {(b, a) for a in (1, 2) for b in (3, 4, 5)}
    before = c.core(1).commit
    c.propose(1, b"minority")
    c.tick_all(ET - 1)
    assert c.core(1).commit == before and c.core(2).commit == before
    assert b"minority" not in c.applied_values(1)
    c.tick_all(4 * ET)
    # the majority side elected its own leader and moved on; the minority write is gone
    side = [x for x in c.leaders() if x in (3, 4, 5)]
    assert side
    c.propose(side[0], b"majority")
    c.tick_all(2)
    c.heal()
    c.tick_all(3 * ET)
    for n in range(1, 6):
        assert b"majority" in c.applied_values(n) and b"minority" not in c.applied_values(n)


def test_follower_commits_only_entries_it_verified_against_the_leader():
    """An append that matches up to index i tells the follower nothing about its entries after
    i: even if the leader's commit index is higher, the follower may commit only up to i (a
    stale suffix beyond i would otherwise be applied)."""
    c = Cluster(bootstrap=False)
    voters = [1, 2, 3]
    c.add_restored(2, term=3, entries=[(1, 1), (2, 1), (3, 2), (4, 2)], voters=voters)
    f = c.core(2)
    # leader of term 3 has (1,1) (2,1) (3,3) (4,3) committed up to 4, sends only entry 2
    f.step(Message(MsgType.APP, 1, 2, term=3, log_term=1, index=1,
                   entries=[Entry(1, 2, EntryType.NORMAL, b"2@1")], commit=4))
    c.nodes[2].drain()
    assert f.commit == 2
    assert [m.index for m in c.queue if m.type == MsgType.APP_RESP] == [2]


def test_a_read_is_confirmed_while_the_leaders_write_is_in_flight():
    """The driver steps the read path's messages while a Ready is being written (between
    `ready()` and `advance()`): the read's heartbeats leave and its acks release it before
    the leader's own write of a new entry is done; the rest of that write then completes as
    usual, and the entry commits."""
    c = settled(3)
    leader = c.nodes[1]
    core = leader.core
    c.checker.proposed.add(b"w")
    index = core.propose(b"w")
    rd = core.ready()  # the write of `index` is now in flight
    step = leader.order.plan(rd, True)
    assert [e.index for e in rd.entries] == [index] and not rd.committed
    for m in step.early:
        leader._send(m)
    c.checker.read_issued(leader, b"r")
    leader.step_urgent(read_ctx=b"r")
    assert {m.type for m in c.sim.net.msgs if m.context == b"r"} == {MsgType.HEARTBEAT}
    c.deliver(hold=lambda m: m.to == 1)  # the followers answer; nothing reaches 1 yet
    acks = [m for m in c.sim.net.msgs if m.type in URGENT]
    assert acks and all(m.type == MsgType.HEARTBEAT_RESP for m in acks)
    c.sim.net.msgs[:] = [m for m in c.sim.net.msgs if m.type not in URGENT]
    for m in acks:
        leader.step_urgent(m)
    assert b"r" in c.checker.reads_answered
    assert core.log.stable < index, "the read should be released before the write is done"
    # the write completes as the driver carries it out, and the entry commits
    leader.disk.append(rd.entries)
    hs = step.hard_state
    if hs is not None:
        leader.disk.hs = hs
    leader.order.written(step)
    for m in step.late:
        leader._send(m)
    core.advance(rd)
    leader.drain()
    c.deliver()
    c.tick_all(2)
    assert c.core(1).commit >= index and c.core(1).applied >= index
    assert c.checker.reads_ok >= 1
