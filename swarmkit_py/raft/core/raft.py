"""The Raft consensus algorithm as a pure, deterministic state machine.

Nothing here touches a clock, a socket, a disk or global randomness: the driver feeds in ticks,
messages and proposals, and collects a `Ready` of what to persist, send and apply. The RNG for
election timeouts is injected. That is what lets `tests/sim` run thousands of seeded fault
schedules in seconds and replay any one of them exactly.

Beyond the paper: pre-vote and check-quorum (a partitioned member cannot disrupt a healthy
leader, and a leader that lost its majority steps down), leader transfer, ReadIndex reads,
learners with one-at-a-time membership changes (applied by the driver as it applies the entry,
as with etcd-io/raft's ApplyConfChange),
pipelined appends with a bounded window, and snapshots for followers that fell behind.
"""

from __future__ import annotations

from typing import Protocol

from ..codec import encode_conf_change
from ..errors import NotLeader, ProposalDropped
from ..types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    RaftRole,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMeta,
    SoftState,
    new_entries,
)
from .config import CoreConfig
from .log import RaftLog
from .order import URGENT
from .progress import Progress, ProgressState
from .quorum import committed_index, majority, vote_result

TRANSFER_CONTEXT = b"transfer"


class Rng(Protocol):
    def randrange(self, start: int, stop: int) -> int: ...


class _ReadRequest:
    __slots__ = ("index", "frm", "acks")

    def __init__(self, index: int, frm: int, acks: set[int]):
        self.index = index
        self.frm = frm
        self.acks = acks


class RaftCore:
    def __init__(
        self,
        node_id: int,
        config: CoreConfig,
        rng: Rng,
        *,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: list[Entry] | None = None,
    ):
        """Build a member from what it persisted (all empty for a brand-new member, which
        then knows no configuration until a leader sends it the log, or `bootstrap` is
        called to found a new cluster)."""
        if node_id <= 0:
            raise ValueError("node_id must be a positive integer")
        self.id = node_id
        self.cfg = config
        self.rng = rng
        hs = hard_state or HardState()
        entries = self._check_persisted(snapshot, entries)
        if snapshot is not None:
            self.log = RaftLog(snapshot.meta.index, snapshot.meta.term, entries)
            self.conf = snapshot.meta.conf.copy()
            self.snapshot: Snapshot | None = snapshot
        else:
            self.log = RaftLog(0, 0, entries)
            self.conf = ConfState()
            self.snapshot = None
        self.log.committed = max(self.log.committed, min(hs.commit, self.log.last_index()))
        self.term = hs.term
        self.vote = hs.vote
        self.role = RaftRole.FOLLOWER
        self.leader = 0
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.dropped_reads: list[bytes] = []
        self.in_doubt: list[Entry] = []  # see Ready.in_doubt
        self.lost_quorum = False  # see Ready.lost_quorum
        self.read_queue: list[tuple[bytes, _ReadRequest]] = []  # leader: in arrival order
        self.pending_reads: list[Message] = []  # leader: waiting for a commit in its term
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.quorum_elapsed = 0
        self.randomized_timeout = 0
        self.lead_transferee = 0
        self.pending_conf_index = 0
        self.removed = False
        self._need_bcast = False
        self._prev_hs = HardState(hs.term, hs.vote, self.log.committed)
        self._prev_ss = SoftState(0, RaftRole.FOLLOWER)
        self._reset_randomized_timeout()

    @staticmethod
    def _check_persisted(snapshot: Snapshot | None, entries: list[Entry] | None) -> list[Entry]:
        """Entries must follow the snapshot contiguously. Entries the snapshot covers (a WAL
        keeps some before it when compacting with keep_entries) are skipped; a gap would
        silently shift every index of the in-memory log, so it is refused."""
        ents = list(entries or [])
        base = snapshot.meta.index if snapshot is not None else 0
        ents = [e for e in ents if e.index > base]
        for i, e in enumerate(ents):
            if e.index != base + 1 + i:
                raise ValueError(f"persisted entries are not contiguous after index {base}: found {e.index} at position {i}")
        return ents

    # ================================================================ bootstrap / queries
    def bootstrap(self, members: list[ConfChange]) -> None:
        """Found a new cluster: the initial voters become committed entries of term 1, so
        the configuration is in the log (and the WAL) like any later change."""
        if self.log.last_index() or self.term:
            raise ValueError("bootstrap needs a member with no state")
        ents = [
            Entry(1, i + 1, EntryType.CONF_CHANGE, encode_conf_change(ConfChange(ConfChangeType.ADD_VOTER, m.node_id, m.context)))
            for i, m in enumerate(members)
        ]
        self.log.append(ents)
        self.log.committed = len(ents)
        self.term = 1

    @property
    def commit(self) -> int:
        return self.log.committed

    @property
    def applied(self) -> int:
        return self.log.applied

    def promotable(self) -> bool:
        return self.id in self.conf.voters

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def progress(self, node_id: int) -> Progress | None:
        return self.prs.get(node_id)

    def quorum_active(self) -> bool:
        """Leader: did a majority of voters answer within the last election timeout?"""
        act = sum(1 for v in self.conf.voters if v == self.id or (v in self.prs and self.prs[v].recent_active))
        return act >= majority(len(self.conf.voters))

    # ================================================================ role changes
    def _reset_randomized_timeout(self) -> None:
        et = self.cfg.election_tick
        self.randomized_timeout = et + self.rng.randrange(0, et)

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = 0
        self.leader = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.quorum_elapsed = 0
        self._reset_randomized_timeout()
        self.lead_transferee = 0
        self.votes = {}
        self._drop_reads()
        self.prs = {}
        last = self.log.last_index()
        for nid in self.conf.voters + self.conf.learners:
            pr = Progress(last + 1, self.cfg.max_inflight, nid in self.conf.learners)
            if nid == self.id:
                pr.match = self.log.stable
            self.prs[nid] = pr

    def _drop_reads(self) -> None:
        for ctx, _ in self.read_queue:
            self.dropped_reads.append(ctx)
        for m in self.pending_reads:
            self.dropped_reads.append(m.context)
        self.read_queue = []
        self.pending_reads = []

    def become_follower(self, term: int, leader: int) -> None:
        self._reset(term)
        self.role = RaftRole.FOLLOWER
        self.leader = leader

    def _become_pre_candidate(self) -> None:
        # Pre-vote changes neither term nor vote: a member cut off from the rest cannot
        # inflate its term and depose a healthy leader when it comes back.
        self.role = RaftRole.PRE_CANDIDATE
        self._reset_randomized_timeout()
        self.votes = {}
        self.leader = 0
        self._drop_reads()

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = RaftRole.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = RaftRole.LEADER
        self.leader = self.id
        # A leader may not know whether earlier conf changes in its log are committed.
        self.pending_conf_index = self.log.last_index()
        self._append_new(EntryType.NORMAL, [b""])  # the no-op of §8
        for pr in self.prs.values():
            pr.recent_active = True

    def campaign(self, transfer: bool = False) -> None:
        """Start an election: a pre-vote first unless disabled or `transfer` (TIMEOUT_NOW),
        which also marks the vote so receivers ignore their leader lease."""
        self._campaign(skip_pre_vote=transfer, transfer=transfer)

    def _campaign(self, skip_pre_vote: bool, transfer: bool) -> None:
        if not self.promotable():
            return
        if self.cfg.pre_vote and not skip_pre_vote:
            self._become_pre_candidate()
            vote_type, term = MsgType.PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            vote_type, term = MsgType.VOTE, self.term
        self.votes[self.id] = True
        if vote_result(self.conf.voters, self.votes) is True:
            # a single voter wins outright
            if vote_type == MsgType.PRE_VOTE:
                self._campaign(skip_pre_vote=True, transfer=False)
            else:
                self._become_leader()
            return
        ctx = TRANSFER_CONTEXT if transfer else b""
        for v in self.conf.voters:
            if v != self.id:
                self._send(Message(vote_type, self.id, v, term=term, log_term=self.log.last_term(), index=self.log.last_index(), context=ctx))

    # ================================================================ ticks
    def tick(self) -> None:
        if self.role == RaftRole.LEADER:
            self._tick_leader()
        else:
            self.election_elapsed += 1
            if self.promotable() and self.election_elapsed >= self.randomized_timeout:
                self.election_elapsed = 0
                self.campaign()

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        self.quorum_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            self.lead_transferee = 0  # a transfer that did not finish in time is abandoned
        if self.cfg.check_quorum and self.quorum_elapsed >= (self.cfg.check_quorum_tick or self.cfg.election_tick):
            self.quorum_elapsed = 0
            if not self.quorum_active():
                # Check-quorum: a majority did not answer for a whole round, so this leader
                # cannot commit anything and another may be elected on the other side. What
                # it appended past its commit index is in doubt from now on (Ready.in_doubt).
                committed = self.log.committed
                last = self.log.last_index()
                if last > committed:
                    self.in_doubt.extend(self.log.slice(committed + 1, last + 1, 1 << 62))
                self.lost_quorum = True
                self.become_follower(self.term, 0)
                return
            for nid, pr in self.prs.items():
                if nid != self.id:
                    pr.recent_active = False
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat(b"")

    # ================================================================ local requests
    def propose(self, data: bytes) -> int:
        """Leader: append and return the entry's index. Follower: forward to the leader and
        return 0 (the caller learns the outcome by watching applied entries)."""
        return self.propose_batch([data])

    def propose_batch(self, datas: list[bytes]) -> int:
        """`propose` for several commands at once, in order: one append (leader) or one
        forwarded message (follower) for all. Returns the last entry's index, or 0."""
        if self.role == RaftRole.LEADER:
            if self.lead_transferee:
                raise ProposalDropped(f"leadership transfer to {self.lead_transferee} in progress")
            self._append_new(EntryType.NORMAL, datas)
            return self.log.last_index()
        if self.leader == 0:
            raise ProposalDropped("no leader: a proposal cannot be accepted now")
        self._send(Message(MsgType.PROP, self.id, self.leader, entries=new_entries(0, 0, EntryType.NORMAL, datas)))
        return 0

    def propose_conf_change(self, cc: ConfChange) -> int:
        if self.role != RaftRole.LEADER:
            raise NotLeader(self.leader)
        if self.lead_transferee:
            raise ProposalDropped("leadership transfer in progress")
        if self.pending_conf_index > self.log.applied:
            raise ProposalDropped("another membership change is still being committed; retry once it applies")
        voters, learners = self.conf.voters, self.conf.learners
        if cc.type == ConfChangeType.ADD_LEARNER and (cc.node_id in voters or cc.node_id in learners):
            raise ValueError(f"member {cc.node_id} is already in the cluster")
        if cc.type == ConfChangeType.PROMOTE and cc.node_id not in learners:
            raise ValueError(f"member {cc.node_id} is not a learner")
        if cc.type == ConfChangeType.REMOVE:
            if cc.node_id not in voters and cc.node_id not in learners:
                raise ValueError(f"member {cc.node_id} is not in the cluster")
            if cc.node_id in voters and len(voters) == 1:
                raise ValueError("cannot remove the last voter")
        if cc.type == ConfChangeType.ADD_VOTER:
            raise ValueError("ADD_VOTER is only for bootstrap; add a learner and promote it")
        self._append_new(EntryType.CONF_CHANGE, [encode_conf_change(cc)])
        self.pending_conf_index = self.log.last_index()
        return self.pending_conf_index

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; answered as a ReadState (or a dropped context)."""
        m = Message(MsgType.READ_INDEX, self.id, self.id, context=context)
        if self.role == RaftRole.LEADER:
            self._leader_read_index(m)
        elif self.leader:
            m.to = self.leader
            self._send(m)
        else:
            self.dropped_reads.append(context)

    def transfer_leadership(self, to: int) -> None:
        if self.role != RaftRole.LEADER:
            raise NotLeader(self.leader)
        if to == self.id or to not in self.conf.voters:
            raise ValueError(f"cannot transfer leadership to {to}: not another voter")
        if self.lead_transferee == to:
            return
        self.lead_transferee = to
        self.election_elapsed = 0
        pr = self.prs[to]
        if pr.match == self.log.last_index():
            self._send(Message(MsgType.TIMEOUT_NOW, self.id, to))
        else:
            self._send_append(to)

    def report_unreachable(self, node_id: int) -> None:
        pr = self.prs.get(node_id)
        if self.role == RaftRole.LEADER and pr and pr.state == ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        pr = self.prs.get(node_id)
        if self.role != RaftRole.LEADER or not pr or pr.state != ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.paused = True  # wait for the next heartbeat response before probing again

    def create_snapshot(self, data: bytes, keep_entries: int = 0) -> Snapshot:
        """Capture the applied state (the driver's FSM snapshot) and compact the log, keeping
        `keep_entries` before it so slightly lagging followers still get plain appends."""
        idx = self.log.applied
        term = self.log.term(idx)
        if term is None:
            raise ValueError(f"cannot snapshot at {idx}: entry compacted")
        snap = Snapshot(SnapshotMeta(idx, term, self.conf.copy()), data)
        self.snapshot = snap
        self.log.compact(max(0, idx - keep_entries))
        return snap

    # ================================================================ messages in
    def step(self, m: Message) -> None:
        if m.term == 0:
            pass  # PROP / READ_INDEX: not bound to a term
        elif m.term > self.term:
            if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
                force = m.context == TRANSFER_CONTEXT
                in_lease = self.cfg.check_quorum and self.leader != 0 and self.election_elapsed < self.cfg.election_tick
                if not force and in_lease:
                    return  # we hear a live leader: ignore disruptive candidates
            if m.type == MsgType.PRE_VOTE:
                pass  # never changes our term
            elif m.type == MsgType.PRE_VOTE_RESP and not m.reject:
                pass  # the term is only claimed once the pre-vote is won
            elif m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, 0)
        elif m.term < self.term:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (MsgType.HEARTBEAT, MsgType.APP):
                # tell a stale leader there is a newer term, or it never steps down
                self._send(Message(MsgType.APP_RESP, self.id, m.frm, term=self.term))
            elif m.type == MsgType.PRE_VOTE:
                self._send(Message(MsgType.PRE_VOTE_RESP, self.id, m.frm, term=self.term, reject=True))
            return

        if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            self._handle_vote_request(m)
            return
        if self.role == RaftRole.LEADER:
            self._step_leader(m)
        elif self.role in (RaftRole.CANDIDATE, RaftRole.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote == 0 and self.leader == 0)
            or (m.type == MsgType.PRE_VOTE and m.term > self.term)
        )
        resp = MsgType.VOTE_RESP if m.type == MsgType.VOTE else MsgType.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(resp, self.id, m.frm, term=m.term))
            if m.type == MsgType.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(Message(resp, self.id, m.frm, term=self.term, reject=True))

    # ---------------------------------------------------------------- leader
    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MsgType.PROP:
            if self.lead_transferee or not m.entries:
                return
            self._append_new(EntryType.NORMAL, [e.data for e in m.entries if e.type == EntryType.NORMAL])
            return
        if t == MsgType.READ_INDEX:
            self._leader_read_index(m)
            return
        pr = self.prs.get(m.frm)
        if pr is None:
            return
        if t == MsgType.APP_RESP:
            pr.recent_active = True
            if m.reject:
                hint_idx, hint_term = m.reject_hint, m.log_term
                if hint_term > 0:
                    hint_idx, _ = self.log.find_conflict_by_term(hint_idx, hint_term)
                if pr.maybe_decr_to(m.index, hint_idx + 1):
                    if pr.state == ProgressState.REPLICATE:
                        pr.become_probe()
                    self._send_append(m.frm)
                return
            if pr.maybe_update(m.index):
                if pr.state == ProgressState.PROBE:
                    pr.become_replicate()
                elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
                    pr.become_probe()
                    pr.become_replicate()
                if self._maybe_commit():
                    self._need_bcast = True
                if m.frm == self.lead_transferee and pr.match == self.log.last_index():
                    self._send(Message(MsgType.TIMEOUT_NOW, self.id, m.frm))
            # the ack may have opened the window: keep the pipeline full
            while pr.next <= self.log.last_index() and not pr.is_paused():
                if not self._send_append(m.frm):
                    break
            return
        if t == MsgType.HEARTBEAT_RESP:
            pr.recent_active = True
            if pr.state == ProgressState.PROBE:
                pr.paused = False
            elif pr.state == ProgressState.REPLICATE and pr.is_paused():
                # appends in the window may all have been lost: let one more through, a gap
                # makes the follower reject it and the leader falls back to probing
                pr.inflight.popleft()
            if pr.match < self.log.last_index() or pr.sent_commit < self.log.committed:
                # even with nothing new to send: an append the follower never got (or whose
                # ack was lost) is otherwise never retried in REPLICATE, and a quiet cluster
                # stalls; an empty append makes the follower ack its match or reject the gap
                self._send_append(m.frm, send_empty=True)
            if m.context:
                self._ack_read(m.frm, m.context)
            return

    def _leader_read_index(self, m: Message) -> None:
        if len(self.conf.voters) == 1 and self.id in self.conf.voters:
            self._release_read(m.frm, m.context, self.log.committed)
            return
        if self.log.term(self.log.committed) != self.term:
            # a new leader does not know the commit index until it commits in its own term
            self.pending_reads.append(m)
            return
        req = _ReadRequest(self.log.committed, m.frm, {self.id})
        self.read_queue.append((m.context, req))
        self._bcast_heartbeat(m.context)

    def _ack_read(self, frm: int, ctx: bytes) -> None:
        pos = next((i for i, (c, _) in enumerate(self.read_queue) if c == ctx), -1)
        if pos < 0:
            return
        req = self.read_queue[pos][1]
        req.acks.add(frm)
        if sum(1 for v in self.conf.voters if v in req.acks) < majority(len(self.conf.voters)):
            return
        # heartbeats are answered in order: confirming this one confirms all earlier ones
        done, self.read_queue = self.read_queue[: pos + 1], self.read_queue[pos + 1 :]
        for c, r in done:
            self._release_read(r.frm, c, r.index)

    def _release_read(self, frm: int, ctx: bytes, index: int) -> None:
        if frm == self.id:
            self.read_states.append(ReadState(index, ctx))
        else:
            self._send(Message(MsgType.READ_INDEX_RESP, self.id, frm, term=self.term, index=index, context=ctx))

    # ---------------------------------------------------------------- candidate
    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t == MsgType.PROP:
            return
        if t in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
            self.become_follower(m.term, m.frm)
            self._step_follower(m)
            return
        want = MsgType.PRE_VOTE_RESP if self.role == RaftRole.PRE_CANDIDATE else MsgType.VOTE_RESP
        if t != want:
            return
        self.votes.setdefault(m.frm, not m.reject)
        res = vote_result(self.conf.voters, self.votes)
        if res is True:
            if self.role == RaftRole.PRE_CANDIDATE:
                # the real election; not a transfer, so voters in a leader's lease still refuse
                self._campaign(skip_pre_vote=True, transfer=False)
            else:
                self._become_leader()
                self._need_bcast = True
        elif res is False:
            self.become_follower(self.term, 0)

    # ---------------------------------------------------------------- follower
    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MsgType.PROP:
            if self.leader:
                m.to = self.leader
                m.frm = self.id
                self._send(m)
            return
        if t == MsgType.READ_INDEX:
            if self.leader:
                m.to = self.leader
                self._send(m)
            else:
                self.dropped_reads.append(m.context)
            return
        if t == MsgType.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))
            return
        if t == MsgType.APP:
            self.election_elapsed = 0
            self.leader = m.frm
            self._handle_append(m)
        elif t == MsgType.HEARTBEAT:
            self.election_elapsed = 0
            self.leader = m.frm
            if m.commit > self.log.committed:
                self.log.commit_to(min(m.commit, self.log.last_index()))
            self._send(Message(MsgType.HEARTBEAT_RESP, self.id, m.frm, term=self.term, context=m.context))
        elif t == MsgType.SNAP:
            self.election_elapsed = 0
            self.leader = m.frm
            self._handle_snapshot(m)
        elif t == MsgType.TIMEOUT_NOW:
            if self.promotable():
                self.campaign(transfer=True)

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(Message(MsgType.APP_RESP, self.id, m.frm, term=self.term, index=self.log.committed))
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(Message(MsgType.APP_RESP, self.id, m.frm, term=self.term, index=last_new))
            return
        hint_idx, hint_term = self.log.find_conflict_by_term(min(m.index, self.log.last_index()), m.log_term)
        self._send(Message(MsgType.APP_RESP, self.id, m.frm, term=self.term, index=m.index, reject=True, reject_hint=hint_idx, log_term=hint_term))

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        assert snap is not None
        meta = snap.meta
        if meta.index <= self.log.committed:
            self._send(Message(MsgType.APP_RESP, self.id, m.frm, term=self.term, index=self.log.committed))
            return
        if self.log.match_term(meta.index, meta.term):
            # we already have the entries: just learn they are committed. Ack only up to the
            # snapshot: what follows in our log may be a stale suffix the leader never had.
            self.log.commit_to(meta.index)
            self._send(Message(MsgType.APP_RESP, self.id, m.frm, term=self.term, index=meta.index))
            return
        self.log.restore(snap)
        self.conf = meta.conf.copy()
        self.snapshot = snap
        self._send(Message(MsgType.APP_RESP, self.id, m.frm, term=self.term, index=self.log.last_index()))

    # ================================================================ replication out
    def _append_new(self, etype: EntryType, datas: list[bytes]) -> None:
        """Append new entries of this leader's term after the last one."""
        self.log.append(new_entries(self.term, self.log.last_index() + 1, etype, datas))
        self._need_bcast = True

    def _send(self, m: Message) -> None:
        if m.term == 0 and m.type not in (MsgType.PROP, MsgType.READ_INDEX):
            m.term = self.term
        self.msgs.append(m)

    def _send_append(self, to: int, send_empty: bool = False) -> bool:
        """Send what `to` is missing (entries, or a snapshot if they were compacted away);
        False when nothing could be sent (paused or nothing new). `send_empty` sends an
        append without entries even when everything was already sent once."""
        pr = self.prs[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        if prev_term is None or (pr.next <= self.log.offset):
            return self._send_snapshot(to, pr)
        last = self.log.last_index()
        ents = self.log.slice(pr.next, last + 1, self.cfg.max_msg_bytes) if pr.next <= last else []
        if not ents and not send_empty and pr.sent_commit >= self.log.committed and pr.state == ProgressState.REPLICATE:
            return False
        commit = self.log.committed
        self._send(Message(MsgType.APP, self.id, to, term=self.term, log_term=prev_term, index=prev, entries=ents, commit=commit))
        pr.sent_commit = commit
        pr.sent(ents[-1].index if ents else prev, len(ents))
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active or self.snapshot is None:
            return False
        self._send(Message(MsgType.SNAP, self.id, to, term=self.term, snapshot=self.snapshot))
        pr.become_snapshot(self.snapshot.meta.index)
        return True

    def _bcast_append(self) -> None:
        for nid, pr in self.prs.items():
            if nid == self.id:
                continue
            while pr.next <= self.log.last_index() and not pr.is_paused():
                if not self._send_append(nid):
                    break
            if pr.sent_commit < self.log.committed and not pr.is_paused():
                self._send_append(nid)

    def _bcast_heartbeat(self, ctx: bytes) -> None:
        for nid, pr in self.prs.items():
            if nid == self.id:
                continue
            commit = min(pr.match, self.log.committed)
            self._send(Message(MsgType.HEARTBEAT, self.id, nid, term=self.term, commit=commit, context=ctx))

    def _maybe_commit(self) -> bool:
        match = {nid: pr.match for nid, pr in self.prs.items()}
        idx = committed_index(self.conf.voters, match)
        # Figure 8: only entries of the current term are committed by counting replicas
        if idx > self.log.committed and self.log.term(idx) == self.term:
            self.log.commit_to(idx)
            if self.pending_reads and self.log.term(self.log.committed) == self.term:
                pending, self.pending_reads = self.pending_reads, []
                for m in pending:
                    self._leader_read_index(m)
            return True
        return False

    # ================================================================ membership
    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """The driver calls this when it applies a committed CONF_CHANGE entry, in log order
        with the other entries (etcd-io/raft's ApplyConfChange): the configuration changes
        exactly when the state machine reaches the entry, and the driver, which decoded the
        entry once, updates its transport from the same value. Returns the new configuration."""
        self._apply_conf_change(cc)
        return self.conf.copy()

    def _apply_conf_change(self, cc: ConfChange) -> None:
        voters, learners = self.conf.voters, self.conf.learners
        nid = cc.node_id
        if cc.type == ConfChangeType.ADD_VOTER:
            if nid in learners:
                learners.remove(nid)
            if nid not in voters:
                voters.append(nid)
        elif cc.type == ConfChangeType.ADD_LEARNER:
            if nid not in voters and nid not in learners:
                learners.append(nid)
        elif cc.type == ConfChangeType.PROMOTE:
            if nid in learners:
                learners.remove(nid)
                voters.append(nid)
        elif cc.type == ConfChangeType.REMOVE:
            if nid in voters:
                voters.remove(nid)
            if nid in learners:
                learners.remove(nid)
            if nid == self.id:
                self.removed = True
        if self.role != RaftRole.LEADER:
            return
        if nid in voters or nid in learners:
            pr = self.prs.get(nid)
            if pr is None:
                pr = self.prs[nid] = Progress(self.log.last_index() + 1, self.cfg.max_inflight)
                pr.recent_active = True
                self._need_bcast = True
            pr.is_learner = nid in learners
        else:
            self.prs.pop(nid, None)
            if nid == self.id:
                # a removed leader steps down; the rest elect a leader among themselves
                self.become_follower(self.term, 0)
                return
            if self.lead_transferee == nid:
                self.lead_transferee = 0
            if self._maybe_commit():
                self._need_bcast = True

    # ================================================================ Ready
    def has_ready(self) -> bool:
        if self._need_bcast and self.role == RaftRole.LEADER:
            return True
        return bool(
            self.msgs
            or self.read_states
            or self.dropped_reads
            or self.in_doubt
            or self.lost_quorum
            or self.log.unstable_entries()
            or self.log.pending_snapshot
            or self.log.committed > self.log.applied
            or self.hard_state() != self._prev_hs
            or SoftState(self.leader, self.role) != self._prev_ss
        )

    def ready(self) -> Ready:
        if self._need_bcast and self.role == RaftRole.LEADER:
            self._bcast_append()
        self._need_bcast = False
        rd = Ready()
        ss = SoftState(self.leader, self.role)
        if ss != self._prev_ss:
            rd.soft_state = ss
        hs = self.hard_state()
        if hs != self._prev_hs:
            rd.hard_state = hs
        rd.entries = list(self.log.unstable_entries())
        rd.snapshot = self.log.pending_snapshot
        rd.committed = list(self.log.next_committed(self.cfg.max_apply_entries))
        rd.messages, self.msgs = self.msgs, []
        rd.read_states, self.read_states = self.read_states, []
        rd.dropped, self.dropped_reads = self.dropped_reads, []
        rd.in_doubt, self.in_doubt = self.in_doubt, []
        rd.lost_quorum, self.lost_quorum = self.lost_quorum, False
        return rd

    def take_urgent(self) -> tuple[list[Message], list[ReadState], list[bytes]]:
        """The read path's output, for the driver to hand out at once, also between `ready()`
        and `advance()` (`order.URGENT` says why that is safe): its messages, the reads
        released and the reads dropped. All else stays for the next Ready."""
        msgs = self.msgs
        urgent = [m for m in msgs if m.type in URGENT]
        if urgent:
            self.msgs = [m for m in msgs if m.type not in URGENT] if len(urgent) < len(msgs) else []
        states, self.read_states = self.read_states, []
        dropped, self.dropped_reads = self.dropped_reads, []
        return urgent, states, dropped

    def advance(self, rd: Ready) -> None:
        """The driver persisted, sent and applied `rd`."""
        if rd.soft_state is not None:
            self._prev_ss = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hs = rd.hard_state
        if rd.snapshot is not None and self.log.pending_snapshot is rd.snapshot:
            self.log.pending_snapshot = None
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.committed:
            self.log.applied = max(self.log.applied, rd.committed[-1].index)
        if self.role == RaftRole.LEADER:
            me = self.prs.get(self.id)
            if me is not None and me.maybe_update(self.log.stable):
                if self._maybe_commit():
                    self._need_bcast = True
