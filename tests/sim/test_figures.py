"""The Raft paper's Figure 7 and Figure 8, built by hand and run through the real core.

Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm", 2014. Logs are
written as lists of terms from index 1; members restart from those logs as from disk (the
configuration comes from an index-0 snapshot), and the same checker as the random simulator
watches every step.
"""

from __future__ import annotations

from swarmkit_py.raft.types import MsgType, RaftRole
from tests.sim.harness import Cluster

VOTERS7 = [1, 2, 3, 4, 5, 6, 7]

# Figure 7: the leader at the top, with followers (a)-(f) as they may be when it takes over.
FIG7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIG7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],  # missing an entry
    "b": [1, 1, 1, 4],  # missing many
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],  # an extra uncommitted entry of term 6
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],  # extra entries of term 7
    "e": [1, 1, 1, 4, 4, 4, 4],  # missing entries and extra ones of term 4
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],  # leader of terms 2 and 3 whose entries never committed
}


def _entries(terms: list[int]) -> list[tuple[int, int]]:
    return [(i + 1, t) for i, t in enumerate(terms)]


def test_figure7_new_leader_brings_every_follower_in_line():
    """A leader elected for term 8 forces its log on followers missing entries (a, b, e),
    holding extra uncommitted ones (c, d, e, f) or both, one probe-and-back-off at a time."""
    c = Cluster(bootstrap=False, pre_vote=False)
    c.add_restored(1, term=7, entries=_entries(FIG7_LEADER), voters=VOTERS7)
    for nid, name in enumerate("abcdef", start=2):
        c.add_restored(nid, term=7, entries=_entries(FIG7_FOLLOWERS[name]), voters=VOTERS7)
    c.campaign(1)
    c.deliver()
    assert c.core(1).role == RaftRole.LEADER and c.core(1).term == 8
    # (d) has term-7 entries, so it must have refused its vote; a, b, c, e, f granted
    c.tick_all(5)
    want = FIG7_LEADER + [8]  # the new leader's no-op
    for nid in range(1, 8):
        assert c.log_terms(nid) == want, f"follower {'Labcdef'[nid - 1]}: {c.log_terms(nid)}"
        assert c.core(nid).commit == len(want)
    c.checker.full_log_check()
    # every member applied the same eleven entries
    chains = {c.nodes[n].fsm.chain for n in range(1, 8)}
    assert len(chains) == 1


def test_figure7_follower_d_cannot_lead():
    """(d) has the most entries but an older... no: a *newer* last term (7) than the others'
    logs; it can win, and then it is the others that are brought in line with its log, whose
    term-7 entries are thereby committed. Either way all logs end identical."""
    c = Cluster(bootstrap=False, pre_vote=False)
    c.add_restored(1, term=7, entries=_entries(FIG7_LEADER), voters=VOTERS7)
    for nid, name in enumerate("abcdef", start=2):
        c.add_restored(nid, term=7, entries=_entries(FIG7_FOLLOWERS[name]), voters=VOTERS7)
    c.campaign(5)  # (d)
    c.deliver()
    assert c.core(5).role == RaftRole.LEADER
    c.tick_all(5)
    want = FIG7_FOLLOWERS["d"] + [8]
    for nid in range(1, 8):
        assert c.log_terms(nid) == want
    c.checker.full_log_check()


def _strip_term(term: int):
    def keep(m) -> bool:
        if m.type == MsgType.APP:
            m.entries = [e for e in m.entries if e.term != term]
        return True

    return keep


def _figure8_start(c: Cluster) -> None:
    """Figure 8 (c)'s starting point: S1 led term 2 and got its index-2 entry to S2 only;
    S5 led term 3 and wrote an index-2 entry of term 3 only to itself. S5 is down."""
    voters = [1, 2, 3, 4, 5]
    c.add_restored(1, term=3, entries=[(1, 1), (2, 2)], voters=voters)
    c.add_restored(2, term=3, entries=[(1, 1), (2, 2)], voters=voters)
    c.add_restored(3, term=3, entries=[(1, 1)], voters=voters)
    c.add_restored(4, term=3, entries=[(1, 1)], voters=voters)
    c.add_restored(5, term=3, vote=5, entries=[(1, 1), (2, 3)], voters=voters)
    c.crash(5)


def test_figure8_old_term_entry_on_a_majority_is_not_committed_by_counting():
    """(c): S1 leads term 4 and gets the term-2 entry at index 2 onto S1, S2, S3 — a majority
    — but not yet its own term-4 no-op. It must NOT count index 2 as committed: (d) S1 crashes,
    S5 wins term 5 with votes from S2, S3, S4 (its last term 3 beats their 2) and overwrites
    index 2. Had S1 committed it, the checker would now see a committed entry replaced."""
    c = Cluster(bootstrap=False, pre_vote=False, check_quorum=False, max_msg_bytes=1)
    _figure8_start(c)
    c.campaign(1)
    # win the election, but the term-4 no-op never arrives: appends lose it on the way
    # (as if split, the part with it lost), the rest of each append gets through
    c.deliver(where=_strip_term(4))
    c.tick_all(3, deliver=False, only={1})
    c.deliver(where=_strip_term(4))
    s1 = c.core(1)
    assert s1.role == RaftRole.LEADER and s1.term == 4
    assert c.log_terms(2) == [1, 2] and c.log_terms(3) == [1, 2]
    assert s1.prs[2].match >= 2 and s1.prs[3].match >= 2  # index 2 is on a majority ...
    assert s1.commit < 2, "Figure 8: a term-2 entry was committed by counting replicas in term 4"
    assert c.core(2).commit < 2 and c.core(3).commit < 2
    # (d)
    c.crash(1)
    c.drop_all()
    c.restart(5)
    for _ in range(5):
        if c.core(5).role == RaftRole.LEADER:
            break
        c.campaign(5)
        c.deliver(where=lambda m: m.to != 1)
    assert c.core(5).role == RaftRole.LEADER, "S5 should win with its term-3 entry"
    c.tick_all(3, only={2, 3, 4, 5})
    for nid in (2, 3, 4, 5):
        assert c.log_terms(nid)[:2] == [1, 3], f"S{nid}: {c.log_terms(nid)}"
    c.checker.full_log_check()


def test_figure8_entry_commits_once_a_current_term_entry_does():
    """(e): S1 instead gets its term-4 entry onto a majority before crashing; that commits
    index 3 and with it the term-2 entry at index 2, and S5 can no longer be elected."""
    c = Cluster(bootstrap=False, pre_vote=False, check_quorum=False, max_msg_bytes=1)
    _figure8_start(c)
    c.campaign(1)
    c.deliver(where=lambda m: m.to != 4 or m.type != MsgType.APP)  # S4 stays behind
    s1 = c.core(1)
    assert s1.role == RaftRole.LEADER and s1.commit == 3
    assert s1.log.term(2) == 2
    c.crash(1)
    c.drop_all()
    c.restart(5)
    for _ in range(10):
        c.campaign(5)
        c.deliver(where=lambda m: m.to != 1)
        assert c.core(5).role != RaftRole.LEADER, "S5 won without the committed entries"
    # one of S2, S3 becomes leader and index 2 keeps term 2 everywhere
    for _ in range(60):
        c.tick_all(1, only={2, 3, 4, 5})
        if c.leaders():
            break
    assert c.leaders() and c.leaders()[0] in (2, 3)
    c.tick_all(3, only={2, 3, 4, 5})
    for nid in (2, 3, 4, 5):
        assert c.log_terms(nid)[:3] == [1, 2, 4]
    c.checker.full_log_check()
