"""Regression tests for bugs the simulator (tests/sim) found in the pure Raft core.

Each test builds the smallest situation that showed the bug, by hand, so it stays readable
once the bug is gone; the seeded simulator keeps hunting for the general case.
"""

from __future__ import annotations

import random

from swarmkit_py.raft.core import TRANSFER_CONTEXT, CoreConfig, RaftCore
from swarmkit_py.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    RaftRole,
    Snapshot,
    SnapshotMeta,
)
from tests.sim.harness import Cluster


def test_lost_append_is_retried_in_a_quiet_cluster():
    """A leader pipelining to a follower (REPLICATE) used to never resend an append that was
    lost when no later write or commit came along: heartbeat answers found "nothing new to
    send". With one of three members down the write then never committed. The answer to a
    heartbeat now sends an (empty if need be) append, so the follower acks or rejects the gap."""
    c = Cluster(3)
    c.elect(1)
    c.tick_all(3)
    c.crash(3)
    c.propose(1, b"x")
    c.deliver(where=lambda m: not (m.type == MsgType.APP and m.to == 2 and m.entries))
    c.tick_all(30, only={1, 2})
    assert b"x" in c.applied_values(1)
    assert b"x" in c.applied_values(2)


def test_lost_append_ack_is_recovered():
    """Same, with the follower's ack lost instead: the leader must learn the match again."""
    c = Cluster(3)
    c.elect(1)
    c.tick_all(3)
    c.crash(3)
    c.propose(1, b"y")
    c.deliver(where=lambda m: not (m.type == MsgType.APP_RESP and m.frm == 2))
    c.tick_all(30, only={1, 2})
    assert b"y" in c.applied_values(2)


def _core(nid: int, **kw) -> RaftCore:
    return RaftCore(nid, CoreConfig(), random.Random(nid), **kw)


def test_snapshot_already_matched_acks_only_the_snapshot_index():
    """A follower that already holds the snapshot's last entry used to answer with its own
    last index. Entries after that point may be a stale suffix of an older term that the
    leader does not have: the leader then believed the follower matched them and could count
    it towards committing entries it never stored. The answer is now the snapshot's index."""
    ents = [Entry(1, 1, EntryType.NORMAL, b"a"), Entry(1, 2, EntryType.NORMAL, b"b"),
            Entry(1, 3, EntryType.NORMAL, b"c"), Entry(2, 4, EntryType.NORMAL, b"stale"),
            Entry(2, 5, EntryType.NORMAL, b"stale")]
    f = _core(2, hard_state=HardState(term=3, vote=0, commit=1), entries=ents)
    snap = Snapshot(SnapshotMeta(3, 1, ConfState([1, 2, 3], [])), b"state@3")
    f.step(Message(MsgType.SNAP, 1, 2, term=3, snapshot=snap))
    rd = f.ready()
    acks = [m for m in rd.messages if m.type == MsgType.APP_RESP]
    assert len(acks) == 1 and not acks[0].reject
    assert acks[0].index == 3, f"acked {acks[0].index}: claims the stale suffix matches the leader"
    assert f.commit == 3


def test_won_pre_vote_does_not_force_the_real_vote():
    """After winning a pre-vote the real vote used to go out marked as a leadership transfer
    (context b"transfer"), which makes receivers ignore their leader lease (check-quorum).
    Harmless most of the time (a won pre-vote means a majority lost the leader, which then
    steps down within an election timeout) but in that window a member still following a
    live leader was forced into the new term. Only TIMEOUT_NOW may force a vote."""
    c = Cluster(3)
    c.elect(1)
    c.tick_all(3)
    c.isolate(1)
    c.tick_all(20, only={2, 3}, deliver=False)
    c.drop_all()
    c.heal()
    c.campaign(2)
    assert {m.type for m in c.queue} == {MsgType.PRE_VOTE}
    c.deliver(hold=lambda m: m.type == MsgType.VOTE)
    votes = [m for m in c.queue if m.type == MsgType.VOTE]
    assert c.core(2).role == RaftRole.CANDIDATE and votes
    assert all(m.context != TRANSFER_CONTEXT for m in votes)


def test_transfer_still_forces_the_vote():
    c = Cluster(3)
    c.elect(1)
    c.tick_all(3)
    c.core(1).transfer_leadership(2)
    c.nodes[1].drain()
    c.deliver(hold=lambda m: m.type == MsgType.VOTE)
    votes = [m for m in c.queue if m.type == MsgType.VOTE]
    assert votes and all(m.context == TRANSFER_CONTEXT for m in votes)
    c.deliver()
    assert c.leaders() == [2]


def test_restart_skips_entries_the_snapshot_covers_and_refuses_gaps():
    """RaftLog indexes its list from snapshot index + 1: entries kept before the snapshot
    (create_snapshot(keep_entries=k) leaves them in the WAL) used to shift every index by k
    without a word. They are skipped now, and a gap is refused with a clear error."""
    import pytest

    snap = Snapshot(SnapshotMeta(3, 1, ConfState([1], [])), b"")
    ents = [Entry(1, i, EntryType.NORMAL, b"%d" % i) for i in range(2, 7)]
    core = _core(1, hard_state=HardState(1, 0, 3), snapshot=snap, entries=ents)
    assert core.log.last_index() == 6 and core.log.term(4) == 1 and core.log.entry(5).data == b"5"
    with pytest.raises(ValueError, match="not contiguous"):
        _core(1, hard_state=HardState(1, 0, 3), snapshot=snap, entries=[ents[3], ents[4]][::-1])


def test_a_leader_cut_off_from_the_majority_steps_down_and_reports_its_writes_in_doubt():
    """Check-quorum: a leader that hears from no majority for a check round steps down and
    hands the driver its uncommitted suffix (Ready.in_doubt), so the writes waiting on it
    fail at once instead of at their 5 s timeout (issue 10). A leader that still hears a
    majority keeps leading and reports nothing."""
    c = Cluster(3, election_tick=10)
    c.elect(1)
    c.tick_all(3)
    c.propose(1, b"committed")
    c.deliver()
    c.tick_all(3)
    assert b"committed" in c.applied_values(1)
    c.crash(3)
    c.tick_all(25, only={1, 2})  # 1 and 2 are still a majority: no step-down
    assert c.leaders() == [1] and c.nodes[1].quorum_losses == 0
    c.isolate(1)
    c.propose(1, b"cut-off-1")
    c.propose(1, b"cut-off-2")
    c.tick(1, 2 * 10 + 1)  # at most two check rounds of election_tick
    assert c.core(1).role != RaftRole.LEADER
    assert c.nodes[1].quorum_losses == 1
    assert [e.data for e in c.nodes[1].in_doubt] == [b"cut-off-1", b"cut-off-2"]
    assert all(e.index > c.core(1).commit for e in c.nodes[1].in_doubt)
