"""A seeded, deterministic simulator for the pure Raft core.

One `random.Random(seed)` drives everything: which node ticks when, message delay, loss,
duplication and reordering, partitions and heals, crashes (clean or torn mid-persist) and
restarts from what the node had persisted, client proposals, leader transfers, ReadIndex
reads, snapshots with log compaction, and membership changes (add learner -> promote, remove).
Given the same seed, a run is exactly the same, so any failure replays alone.

Each node is driven exactly as the asyncio driver (raft/node.py) drives the core, through the
same `core.order.ReadyOrder` (see `SimNode.drain`): a leader sends its appends, heartbeats and
snapshots before its own write, a change of the commit index alone is not written, the
snapshot and entries are written, the rest is sent, committed entries are applied (membership
changes through `core.apply_conf_change`, as the driver does; sometimes only a prefix of them,
as when the driver's apply slice runs out, the rest in a later Ready), then advance. A crash keeps only
what was written, so it loses an unwritten commit index and can land between a leader's early
sends and its write. The read path's messages (`core.URGENT`: heartbeats, their acks, forwarded
reads and their answers) are stepped as they arrive and what they make is sent at once
(`SimNode.step_urgent`), as the driver does; sometimes they arrive while a Ready is being written
(between its early sends and its write, overtaking what the node has not stepped yet), and a
read may be asked then too. The network reports to the sender what a transport reports: a snapshot
is delivered only once the follower's answer comes back, and a lost message may report the
peer unreachable. Messages cross the network through the real msgpack codec, so no two cores
ever share a mutable object.

The `Checker` verifies the Raft safety properties after every single step (one tick, one
delivery, one client request, one fault), incrementally so that thousands of schedules run in
seconds:
- election safety: at most one leader per term, over the whole history;
- log matching: every (index, term) ever seen in any log (persisted or in memory) denotes one
  entry with one predecessor term, hence identical prefixes;
- leader completeness: every entry known committed is in the log of every later leader;
- state machine safety: no two members apply different entries at an index; applied entries
  are contiguous; a snapshot restores exactly the state the others had at that index;
- commit never decreases on a live member, applied never exceeds commit;
- durability of acknowledgements: an append ack or a granted vote leaves only after the
  entries / vote are on the sender's disk;
- linearizable reads: a ReadState's index is >= the highest commit index any member knew when
  the read was issued, and the state served then holds every write acknowledged before it.
After the chaos the network heals and every member restarts; `check_liveness` then demands a
leader and a fresh write applied on every live member within a bound.
"""

from __future__ import annotations

import heapq
import os
import random
import zlib
from dataclasses import dataclass, field

import msgpack

from swarmkit_py.raft.codec import decode_conf_change, decode_message, encode_message
from swarmkit_py.raft.core import URGENT, CoreConfig, RaftCore, ReadyOrder, Step
from swarmkit_py.raft.errors import NotLeader, ProposalDropped
from swarmkit_py.raft.types import (
    ConfChange,
    ConfChangeType,
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

MAX_VOTERS = 7
MIN_VOTERS = 3

RESULTS: dict = {}  # filled by test_random_schedules, printed by conftest's terminal summary


class SimFailure(AssertionError):
    """A safety or liveness property was violated; the message says which and where."""


def replay_hint(seed: int) -> str:
    return f"replay: SIM_SEED={seed} ./scripts/test.sh tests/sim  (add SIM_TRACE=1 for a trace)"


# ==================================================================== the state machine
class Fsm:
    """The replicated state machine: the set of client writes, plus a running CRC of every
    applied entry (no-ops and conf changes too) so divergence is caught at the index where it
    happens, and a snapshot can be checked against what the others had at that point."""

    __slots__ = ("applied", "chain", "values", "writes")

    def __init__(self) -> None:
        self.applied = 0
        self.chain = 0
        self.values: set[bytes] = set()
        self.writes = 0

    def apply(self, e: Entry) -> None:
        self.applied = e.index
        self.chain = zlib.crc32(b"%d:%d:%d:" % (e.index, e.term, e.type) + e.data, self.chain)
        if e.type == EntryType.NORMAL and e.data:
            self.values.add(e.data)
            self.writes += 1

    def snapshot_data(self) -> bytes:
        return msgpack.packb((self.applied, self.chain, self.writes, sorted(self.values)))

    def restore(self, data: bytes) -> None:
        applied, chain, writes, values = msgpack.unpackb(data)
        self.applied, self.chain, self.writes = applied, chain, writes
        self.values = set(values)


# ==================================================================== one member
@dataclass
class Disk:
    """What survives a crash: snapshot, WAL entries, hard state."""

    hs: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.snapshot.meta.index if self.snapshot else 0

    def append(self, ents: list[Entry]) -> None:
        """WAL append; a first index at or below the last one overwrites that suffix."""
        if not ents:
            return
        first = ents[0].index
        if self.entries and first <= self.entries[-1].index:
            base = self.entries[0].index
            del self.entries[max(0, first - base) :]
        if self.entries and self.entries[-1].index != first - 1:
            raise SimFailure(f"WAL gap: last {self.entries[-1].index}, next {first}")
        self.entries.extend(Entry(e.term, e.index, e.type, e.data) for e in ents)

    def install_snapshot(self, snap: Snapshot) -> None:
        """A snapshot from the leader replaces the whole log."""
        self.snapshot = snap
        self.entries = []


class SimNode:
    def __init__(self, sim: Sim, node_id: int):
        self.sim = sim
        self.id = node_id
        self.disk = Disk()
        self.alive = True
        self.stopped = False  # removed from the cluster for good: never restarted
        self.incarnation = 0
        self.fsm = Fsm()
        self.core = RaftCore(node_id, sim.core_cfg, sim.rng)
        self.order = ReadyOrder(self.disk.hs)
        self.torn_next = False  # crash in the middle of the next persist
        self.reads: list[tuple[bytes, int, int]] = []  # (ctx, index, acked writes at issue) to serve
        self.in_doubt: list[Entry] = []  # entries this member reported in doubt (check-quorum step-downs)
        self.quorum_losses = 0
        self.midflight_read_at = -1

    # ---- the driver loop, as the asyncio driver runs it ----------------------------------
    def drain(self) -> None:
        core = self.core
        rounds = 0
        while self.alive and core.has_ready():
            rounds += 1
            if rounds > 1000:
                raise SimFailure(f"node {self.id}: has_ready() stays true (livelock in the core)")
            rd = core.ready()
            step = self.order.plan(rd, core.role == RaftRole.LEADER)
            for m in step.early:
                self._send(m)
            sim = self.sim
            if sim.p_midflight and sim.mid_rng.random() < sim.p_midflight:
                self._midflight()
                if not self.alive:
                    return
            if self.torn_next:
                self._torn_persist(rd, step)
                return
            if rd.snapshot is not None:
                self.disk.install_snapshot(rd.snapshot)
                self.fsm.restore(rd.snapshot.data)
                self.sim.checker.restored(self, rd.snapshot)
            if step.write:
                if rd.entries:
                    self.sim.checker.new_entries(self, rd.entries)
                    self.disk.append(rd.entries)
                if step.hard_state is not None:
                    hs = step.hard_state
                    self.disk.hs = HardState(hs.term, hs.vote, hs.commit)
                self.order.written(step)
            for m in step.late:
                self._send(m)
            partial = False
            if len(rd.committed) > 1 and self.sim.apply_rng.random() < self.sim.p_partial_apply:
                # the driver's apply slice ran out: a prefix is applied and the core advanced
                # to it; the rest comes in a later Ready, after the messages arriving meanwhile
                rd.committed = rd.committed[: self.sim.apply_rng.randint(1, len(rd.committed) - 1)]
                partial = True
            for e in rd.committed:
                self.sim.checker.applying(self, e)
                if e.type == EntryType.CONF_CHANGE:
                    core.apply_conf_change(decode_conf_change(e.data))
                self.fsm.apply(e)
            for rs in rd.read_states:
                self.sim.checker.read_state(self, rs.context, rs.index)
            if rd.lost_quorum or rd.in_doubt:
                self.sim.checker.stepped_down(self, rd)
            core.advance(rd)
            self._serve_reads()
            if partial:
                break
        # with no Ready nothing observable changed (role, term, commit all show up in one)
        if rounds and self.alive:
            self.sim.checker.node_state(self)

    def _send(self, m: Message) -> None:
        self.sim.checker.outgoing(self, m)
        self.sim.net.send(m)

    def step_urgent(self, m: Message | None = None, read_ctx: bytes = b"") -> None:
        """The driver's `_step_now`: step a read-path message (or ask a read) at once and hand
        out what the core lets go at once; the rest waits for the next Ready."""
        core = self.core
        if m is None:
            core.read_index(read_ctx)
        else:
            core.step(m)
        msgs, states, _ = core.take_urgent()
        for out in msgs:
            self._send(out)
        for rs in states:
            self.sim.checker.read_state(self, rs.context, rs.index)
        self._serve_reads()

    def _midflight(self) -> None:
        """While this node's Ready is being written: read-path messages due to it arrive and
        are stepped, and a client may ask a read."""
        sim = self.sim
        rng = sim.mid_rng
        for _ in range(rng.randint(1, 4)):
            if not sim.net.deliver_urgent_to(self):
                break
            if not self.alive:
                return
        if sim.p.p_read and self.midflight_read_at != sim.now and rng.random() < 0.5:
            self.midflight_read_at = sim.now  # one per time unit: a read per Ready would snowball
            sim.read_seq += 1
            ctx = b"r%d" % sim.read_seq
            sim.checker.read_issued(self, ctx)
            self.step_urgent(read_ctx=ctx)

    def _torn_persist(self, rd, step: Step) -> None:
        """Crash part-way through persisting `rd`: a prefix of (snapshot, entries, hard
        state) reaches the disk; only what the leader sends before its write has left."""
        rng = self.sim.rng
        steps = (1 if rd.snapshot is not None else 0) + len(rd.entries) + (1 if step.hard_state else 0)
        keep = rng.randrange(0, steps + 1)
        if rd.snapshot is not None and keep > 0:
            self.disk.install_snapshot(rd.snapshot)
            keep -= 1
        n = min(keep, len(rd.entries))
        if n:
            self.sim.checker.new_entries(self, rd.entries)
            self.disk.append(rd.entries[:n])
        keep -= n
        if step.hard_state is not None and keep > 0 and n == len(rd.entries):
            hs = step.hard_state
            self.disk.hs = HardState(hs.term, hs.vote, hs.commit)
        self.sim.trace(f"n{self.id} torn crash (kept {n}/{len(rd.entries)} entries)")
        self.crash()

    def _serve_reads(self) -> None:
        if not self.reads:
            return
        keep = []
        for ctx, index, acked in self.reads:
            if self.fsm.applied >= index:
                self.sim.checker.serve_read(self, ctx, acked)
            else:
                keep.append((ctx, index, acked))
        self.reads = keep

    # ---- faults -------------------------------------------------------------------------
    def crash(self) -> None:
        self.alive = False
        self.torn_next = False
        self.reads = []
        self.core = None  # type: ignore[assignment]
        self.fsm = Fsm()

    def restart(self) -> None:
        snap = self.disk.snapshot
        sidx = snap.meta.index if snap else 0
        # the whole WAL, including entries a snapshot with keep_entries left before it: the
        # core skips what the snapshot covers
        wal = [Entry(e.term, e.index, e.type, e.data) for e in self.disk.entries]
        ents = [e for e in wal if e.index > sidx]
        hs = self.disk.hs
        self.core = RaftCore(self.id, self.sim.core_cfg, self.sim.rng, hard_state=HardState(hs.term, hs.vote, hs.commit), snapshot=snap, entries=wal)
        self.order = ReadyOrder(hs)
        if ents:
            self.sim.checker.new_entries(self, ents)
        self.fsm = Fsm()
        if snap is not None:
            self.fsm.restore(snap.data)
            self.sim.checker.restored(self, snap)
        self.alive = True
        self.incarnation += 1
        self.sim.checker.restarted(self)
        self.drain()


# ==================================================================== the network
class Network:
    def __init__(self, sim: Sim):
        self.sim = sim
        self.queue: list[tuple[float, int, bytes, int, int, bool]] = []
        """A heap of (time, seq, bytes, frm, to, read path?)."""
        self.urgent: dict[int, list[tuple[float, int, bytes, int, int, bool]]] = {}
        """Per destination, a heap of its read-path messages (also in `queue`): a member in the
        middle of a write takes the due ones ahead of the rest. Scanning and decoding the
        whole queue for them was over half of the simulator's time."""
        self._early: set[int] = set()  # seqs delivered from `urgent`, still in `queue`
        self._late: set[int] = set()  # seqs delivered from `queue`, still in `urgent`
        self.link_last: dict[tuple[int, int], float] = {}
        self.seq = 0
        self.blocked: set[tuple[int, int]] = set()
        self.loss = 0.0
        self.dup = 0.0
        self.max_delay = 0
        self.reorder = 0.0

    def send(self, m: Message) -> None:
        """Queue `m`. Each link is FIFO, like the TCP stream the transport uses, except that
        with probability `reorder` a message may overtake earlier ones (a reconnect); links
        interleave in random order."""
        rng = self.sim.rng
        data = encode_message(m)
        copies = 2 if self.dup and rng.random() < self.dup else 1
        link = (m.frm, m.to)
        urgent = m.type in URGENT
        for _ in range(copies):
            delay = rng.randint(0, self.max_delay) if self.max_delay else 0
            at = self.sim.now + delay + rng.random()
            if not (self.reorder and rng.random() < self.reorder):
                at = max(at, self.link_last.get(link, 0.0) + 1e-9)
                self.link_last[link] = at
            self.seq += 1
            item = (at, self.seq, data, m.frm, m.to, urgent)
            heapq.heappush(self.queue, item)
            if urgent:
                heapq.heappush(self.urgent.setdefault(m.to, []), item)

    def deliverable(self) -> bool:
        q, early = self.queue, self._early
        while q and q[0][1] in early:
            early.discard(heapq.heappop(q)[1])
        return bool(q) and q[0][0] < self.sim.now + 1

    def deliver_one(self) -> None:
        """The next message in time (call after `deliverable()`)."""
        item = heapq.heappop(self.queue)
        if item[5]:
            self._late.add(item[1])
        self._deliver(item)

    def deliver_urgent_to(self, node: SimNode) -> bool:
        """Deliver one due read-path message addressed to `node` while it writes a Ready (the
        driver steps those at once), ahead of the rest of the queue; False if there is none."""
        h, late = self.urgent.get(node.id), self._late
        while h and h[0][1] in late:
            late.discard(heapq.heappop(h)[1])
        if not h or h[0][0] >= self.sim.now + 1:
            return False
        item = heapq.heappop(h)
        self._early.add(item[1])
        self._deliver(item, midflight=True)
        return True

    def _deliver(self, item: tuple, midflight: bool = False) -> None:
        _, _, data, frm, to, _ = item
        sim = self.sim
        node = sim.nodes.get(to)
        m = decode_message(data)
        lost = (frm, to) in self.blocked or (self.loss and sim.rng.random() < self.loss)
        sender = sim.nodes.get(frm)
        if lost or node is None or not node.alive:
            # what the transport tells the sender of a failed send (etcd-io/raft's
            # ReportSnapshot and ReportUnreachable); a plain loss is not always noticed
            if sender is not None and sender.alive:
                if m.type == MsgType.SNAP:
                    sender.core.report_snapshot(to, False)
                if sim.rng.random() < 0.5:
                    sender.core.report_unreachable(to)
                if not midflight:  # a node in the middle of its write drains nobody
                    sender.drain()
            return
        if m.type in URGENT:
            node.step_urgent(m)
        else:
            node.core.step(m)
        if not midflight:
            node.drain()
        if m.type == MsgType.SNAP and sender is not None and sender.alive:
            # delivered: the follower's answer to the snapshot call may still be lost
            acked = (to, frm) not in self.blocked and not (self.loss and sim.rng.random() < self.loss)
            sender.core.report_snapshot(to, acked)
            sender.drain()


# ==================================================================== the checker
class Checker:
    def __init__(self, sim: Sim):
        self.sim = sim
        self.leaders: dict[int, int] = {}  # term -> the one leader of that term
        self.seen: dict[tuple[int, int], tuple[int, int, bytes]] = {}  # (index, term) -> (prev term, type, data)
        self.committed: dict[int, int] = {}  # index -> term, of every entry known committed
        self.max_commit = 0
        self.applied: dict[int, tuple[int, int, bytes, int]] = {}  # index -> (term, type, data, chain after it)
        self.last_commit: dict[int, int] = {}
        self.last_role: dict[int, RaftRole] = {}
        self.acked: list[bytes] = []  # client writes in the order they were first applied
        self.acked_set: set[bytes] = set()
        self.proposed: set[bytes] = set()
        self.reads_issued: dict[bytes, tuple[int, int, int]] = {}  # ctx -> (node, min index, acked count)
        self.reads_answered: set[bytes] = set()
        self.reads_ok = 0

    def fail(self, msg: str) -> None:
        raise SimFailure(f"t={self.sim.now}: {msg}")

    # ---- log matching ---------------------------------------------------------------------
    def new_entries(self, node: SimNode, ents: list[Entry]) -> None:
        log = node.core.log
        prev = log.term(ents[0].index - 1)
        if prev is None:
            prev = node.disk.snapshot.meta.term if node.disk.snapshot and node.disk.snapshot.meta.index == ents[0].index - 1 else -1
        for e in ents:
            key = (e.index, e.term)
            val = (prev, e.type, e.data)
            old = self.seen.get(key)
            if old is None:
                self.seen[key] = val
            elif prev == -1 and old[1:] == val[1:]:
                pass
            elif old != val:
                self.fail(f"log matching: n{node.id} has entry {key} {val}, another log had {old}")
            prev = e.term

    def full_log_check(self) -> None:
        """Every log, in memory and on disk, against the history of (index, term) pairs."""
        for node in self.sim.nodes.values():
            logs = [("disk", node.disk.entries, node.disk.snapshot)]
            if node.alive:
                logs.append(("memory", node.core.log.entries, None))
            for where, ents, _ in logs:
                for i, e in enumerate(ents):
                    old = self.seen.get((e.index, e.term))
                    if old is None:
                        self.fail(f"log matching: n{node.id} {where} log holds unseen entry {(e.index, e.term)}")
                    if (old[1], old[2]) != (e.type, e.data) or (i and old[0] != ents[i - 1].term):
                        self.fail(f"log matching: n{node.id} {where} log entry {(e.index, e.term)} differs from history {old}")
                    if i and ents[i - 1].index != e.index - 1:
                        self.fail(f"n{node.id} {where} log has a gap before {e.index}")
            for idx, term in self.committed.items():
                if node.alive and node.core.commit >= idx:
                    t = node.core.log.term(idx)
                    if t is not None and t != term:
                        self.fail(f"n{node.id} committed index {idx} has term {t}, committed term was {term}")

    # ---- messages out ---------------------------------------------------------------------
    def outgoing(self, node: SimNode, m: Message) -> None:
        """Acknowledgements must leave only after what they acknowledge is durable."""
        if m.type == MsgType.APP_RESP and not m.reject and m.index:
            if node.disk.last_index() < m.index and (node.disk.hs.commit < m.index):
                self.fail(f"n{node.id} acks index {m.index} to n{m.to} with only {node.disk.last_index()} on disk")
        elif m.type == MsgType.VOTE_RESP and not m.reject:
            hs = node.disk.hs
            if hs.term != m.term or hs.vote != m.to:
                self.fail(f"n{node.id} grants its vote to n{m.to} in term {m.term} before persisting it (disk {hs})")

    # ---- state machine safety -------------------------------------------------------------
    def applying(self, node: SimNode, e: Entry) -> None:
        if e.index != node.fsm.applied + 1:
            self.fail(f"n{node.id} applies index {e.index} after {node.fsm.applied}: not contiguous")
        if e.index > node.core.commit:
            self.fail(f"n{node.id} applies uncommitted index {e.index} (commit {node.core.commit})")
        chain = zlib.crc32(b"%d:%d:%d:" % (e.index, e.term, e.type) + e.data, node.fsm.chain)
        old = self.applied.get(e.index)
        if old is None:
            self.applied[e.index] = (e.term, e.type, e.data, chain)
        elif old != (e.term, e.type, e.data, chain):
            self.fail(f"state machine safety: n{node.id} applies {(e.term, e.type, e.data)} at {e.index}, another member applied {old[:3]}")
        if e.type == EntryType.NORMAL and e.data:
            if e.data not in self.proposed:
                self.fail(f"n{node.id} applies {e.data!r} that no client proposed")
            if e.data not in self.acked_set:
                self.acked_set.add(e.data)
                self.acked.append(e.data)

    def stepped_down(self, node: SimNode, rd) -> None:
        """A check-quorum step-down: entries are reported in doubt only with it, as one
        contiguous run past a commit index (the driver fails the writes waiting on them)."""
        if not rd.lost_quorum:
            self.fail(f"node {node.id}: entries reported in doubt without a check-quorum step-down")
        idx = [e.index for e in rd.in_doubt]
        if idx and idx != list(range(idx[0], idx[0] + len(idx))):
            self.fail(f"node {node.id}: in-doubt entries {idx} are not one contiguous run")
        node.quorum_losses += 1
        node.in_doubt.extend(rd.in_doubt)

    def restored(self, node: SimNode, snap: Snapshot) -> None:
        idx = snap.meta.index
        old = self.applied.get(idx)
        if old is not None and old[3] != node.fsm.chain:
            self.fail(f"n{node.id} restored a snapshot at {idx} whose state differs from what was applied there")
        if node.fsm.applied != idx:
            self.fail(f"snapshot at {idx} holds state applied to {node.fsm.applied}")

    # ---- reads ------------------------------------------------------------------------------
    def read_issued(self, node: SimNode, ctx: bytes) -> None:
        self.reads_issued[ctx] = (node.id, self.max_commit, len(self.acked))

    def read_state(self, node: SimNode, ctx: bytes, index: int) -> None:
        issued = self.reads_issued.get(ctx)
        if issued is None:
            self.fail(f"n{node.id} got a ReadState for a read nobody issued: {ctx!r}")
        who, min_index, acked = issued
        if ctx in self.reads_answered:
            # the network duplicated the request or its answer: the driver ignores a second
            # answer, but it must still be a valid read point
            if index < min_index:
                self.fail(f"linearizability: duplicate answer to read {ctx!r} has index {index} < {min_index}")
            return
        self.reads_answered.add(ctx)
        if who != node.id:
            self.fail(f"read {ctx!r} issued on n{who} answered on n{node.id}")
        if index < min_index:
            self.fail(f"linearizability: read {ctx!r} on n{node.id} got index {index} < commit index {min_index} known when it was issued")
        node.reads.append((ctx, index, acked))

    def serve_read(self, node: SimNode, ctx: bytes, acked: int) -> None:
        missing = [v for v in self.acked[:acked] if v not in node.fsm.values]
        if missing:
            self.fail(f"linearizability: read {ctx!r} served on n{node.id} misses acknowledged writes {missing[:3]}")
        self.reads_ok += 1

    # ---- per node, after every step -------------------------------------------------------
    def restarted(self, node: SimNode) -> None:
        self.last_commit[node.id] = node.core.commit
        self.last_role[node.id] = node.core.role

    def node_state(self, node: SimNode) -> None:
        core = node.core
        commit = core.commit
        if commit < self.last_commit.get(node.id, 0):
            self.fail(f"n{node.id} commit went back from {self.last_commit[node.id]} to {commit}")
        if commit > core.log.last_index():
            self.fail(f"n{node.id} commit {commit} beyond its last index {core.log.last_index()}")
        if core.applied > commit:
            self.fail(f"n{node.id} applied {core.applied} beyond commit {commit}")
        if core.applied != node.fsm.applied:
            self.fail(f"n{node.id} core says applied {core.applied}, the state machine is at {node.fsm.applied}")
        if commit > self.last_commit.get(node.id, 0):
            log = core.log
            for i in range(max(self.last_commit.get(node.id, 0), log.offset) + 1, commit + 1):
                t = log.term(i)
                old = self.committed.setdefault(i, t)
                if old != t:
                    self.fail(f"n{node.id} commits index {i} with term {t}, committed term there is {old}")
            self.max_commit = max(self.max_commit, commit)
        self.last_commit[node.id] = commit
        role = core.role
        if role == RaftRole.LEADER:
            holder = self.leaders.setdefault(core.term, node.id)
            if holder != node.id:
                self.fail(f"election safety: n{node.id} and n{holder} both lead term {core.term}")
            if self.last_role.get(node.id) != RaftRole.LEADER:
                self.sim.trace(f"n{node.id} leads term {core.term}")
                self._leader_complete(node)
        self.last_role[node.id] = role

    def _leader_complete(self, node: SimNode) -> None:
        log = node.core.log
        if log.last_index() < self.max_commit:
            self.fail(f"leader completeness: n{node.id} leads term {node.core.term} with last index {log.last_index()} < committed {self.max_commit}")
        for i in range(log.offset + 1, self.max_commit + 1):
            want = self.committed.get(i)
            if want is not None and log.term(i) != want:
                self.fail(f"leader completeness: n{node.id} leads term {node.core.term} without committed entry {i} (term {want})")


# ==================================================================== the simulation
@dataclass
class Params:
    """The knobs of one schedule, all drawn from the seed."""

    nodes: int
    steps: int  # time units of chaos
    loss: float
    dup: float
    max_delay: int
    reorder: float
    p_crash: float
    p_torn: float
    p_partition: float
    p_heal: float
    p_propose: float
    p_transfer: float
    p_read: float
    p_snapshot: float
    p_member: float
    p_skew: float


def params_for(seed: int, rng: random.Random, steps: int) -> Params:
    return Params(
        nodes=(3, 5, 7)[seed % 3],
        steps=steps,
        loss=rng.choice((0.0, 0.01, 0.05, 0.15)),
        dup=rng.choice((0.0, 0.02, 0.1)),
        max_delay=rng.choice((0, 1, 2, 4)),
        reorder=rng.choice((0.0, 0.01, 0.1)),
        p_crash=rng.choice((0.0, 0.01, 0.03)),
        p_torn=rng.choice((0.0, 0.5)),
        p_partition=rng.choice((0.0, 0.01, 0.03)),
        p_heal=rng.choice((0.05, 0.15)),
        p_propose=rng.choice((0.2, 0.5, 1.0)),
        p_transfer=rng.choice((0.0, 0.01, 0.03)),
        p_read=rng.choice((0.0, 0.1, 0.3)),
        p_snapshot=rng.choice((0.0, 0.03, 0.1)),
        p_member=rng.choice((0.0, 0.02, 0.05)),
        p_skew=rng.choice((0.0, 0.05)),
    )


class Sim:
    def __init__(self, seed: int, steps: int = 200, trace: bool = False, params: Params | None = None):
        self.seed = seed
        self.rng = random.Random(seed)
        rng = self.rng
        self.p = params or params_for(seed, rng, steps)
        et = rng.randint(5, 10)
        self.core_cfg = CoreConfig(
            election_tick=et,
            heartbeat_tick=rng.choice((1, 2)),
            max_inflight=rng.choice((1, 2, 8, 256)),
            max_msg_bytes=rng.choice((40, 200, 1 << 20)),
            max_apply_entries=rng.choice((1, 3, 4096)),
            pre_vote=rng.random() < 0.85,
            check_quorum=rng.random() < 0.85,
            check_quorum_tick=rng.choice((0, 2 * et)),  # 0: every election_tick; the driver uses 2x
        )
        # partial applies draw from their own generator, so every seed's schedule of faults
        # and messages is the one it was before they were simulated
        self.apply_rng = random.Random(seed ^ 0x5A1CE)
        self.p_partial_apply = self.apply_rng.choice((0.0, 0.3, 0.7))
        # read-path messages stepped while a Ready is being written: their own generator too
        self.mid_rng = random.Random(seed ^ 0x3D11)
        self.p_midflight = self.mid_rng.choice((0.0, 0.3, 0.8))
        self.now = 0
        self.tracing = trace
        self.log: list[str] = []
        self.net = Network(self)
        self.net.loss, self.net.dup, self.net.max_delay = self.p.loss, self.p.dup, self.p.max_delay
        self.net.reorder = self.p.reorder
        self.checker = Checker(self)
        self.nodes: dict[int, SimNode] = {}
        self.next_id = self.p.nodes + 1
        self.write_seq = 0
        self.read_seq = 0
        self.pending_remove: tuple[int, int, int] | None = None  # (index, term, node)
        self.down_until: dict[int, int] = {}
        self.faults = True
        members = [ConfChange(ConfChangeType.ADD_VOTER, i) for i in range(1, self.p.nodes + 1)]
        for i in range(1, self.p.nodes + 1):
            n = SimNode(self, i)
            n.core.bootstrap(members)
            self.nodes[i] = n
        for n in self.nodes.values():
            n.drain()

    def trace(self, msg: str) -> None:
        if self.tracing:
            self.log.append(f"t={self.now} {msg}")
            print(f"t={self.now} {msg}")

    # ---- helpers ----------------------------------------------------------------------------
    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def leader(self) -> SimNode | None:
        """The live leader of the highest term, if any."""
        best = None
        for n in self.live():
            if n.core.role == RaftRole.LEADER and (best is None or n.core.term > best.core.term):
                best = n
        return best

    # ---- one time unit ------------------------------------------------------------------------
    def run_unit(self) -> None:
        rng = self.rng
        if self.faults:
            self._faults()
            self._operator()
        self._clients()
        self.deliver_due()
        order = self.live()
        rng.shuffle(order)
        for n in order:
            if not n.alive:
                continue
            ticks = 1
            if self.p.p_skew and rng.random() < self.p.p_skew:
                ticks = rng.choice((0, 2))
            for _ in range(ticks):
                if not n.alive:
                    break
                n.core.tick()
                n.drain()
        self.deliver_due()
        self.now += 1
        self._check_removal()

    def deliver_due(self) -> None:
        budget = 5000
        while self.net.deliverable():
            budget -= 1
            if budget < 0:
                raise SimFailure(f"t={self.now}: message storm: more than 5000 deliveries in one time unit")
            self.net.deliver_one()

    def _faults(self) -> None:
        rng, p = self.rng, self.p
        for nid, until in list(self.down_until.items()):
            if until <= self.now:
                del self.down_until[nid]
                node = self.nodes[nid]
                if not node.stopped:
                    self.trace(f"n{nid} restarts")
                    node.restart()
        if p.p_crash and rng.random() < p.p_crash:
            cands = [n for n in self.live() if not n.torn_next]
            if cands:
                n = rng.choice(cands)
                if p.p_torn and rng.random() < p.p_torn:
                    self.trace(f"n{n.id} will crash mid-persist")
                    n.torn_next = True
                else:
                    self.trace(f"n{n.id} crashes")
                    n.crash()
                self.down_until[n.id] = self.now + rng.randint(1, 4 * self.core_cfg.election_tick)
        for n in self.live():
            if n.torn_next and n.id not in self.down_until:
                self.down_until[n.id] = self.now + rng.randint(1, 4 * self.core_cfg.election_tick)
        if p.p_partition and rng.random() < p.p_partition:
            ids = list(self.nodes)
            kind = rng.random()
            blocked = set()
            if kind < 0.4:  # isolate one node
                x = rng.choice(ids)
                side = {x}
            else:  # split in two
                side = set(rng.sample(ids, rng.randint(1, len(ids) - 1)))
            oneway = rng.random() < 0.2
            for a in ids:
                for b in ids:
                    if (a in side) != (b in side):
                        if not oneway or a in side:
                            blocked.add((a, b))
            self.net.blocked = blocked
            self.trace(f"partition {sorted(side)} {'one-way' if oneway else ''}")
        elif self.net.blocked and rng.random() < p.p_heal:
            self.net.blocked = set()
            self.trace("heal")

    def _clients(self) -> None:
        rng, p = self.rng, self.p
        live = self.live()
        if not live:
            return
        if rng.random() < p.p_propose:
            n = rng.choice(live)
            self.write_seq += 1
            data = b"w%d" % self.write_seq
            self.checker.proposed.add(data)
            try:
                n.core.propose(data)
            except (NotLeader, ProposalDropped):
                pass
            n.drain()
        if p.p_read and rng.random() < p.p_read:
            n = rng.choice(self.live() or live)
            if n.alive:
                self.read_seq += 1
                ctx = b"r%d" % self.read_seq
                self.checker.read_issued(n, ctx)
                n.step_urgent(read_ctx=ctx)
                n.drain()
        if p.p_transfer and rng.random() < p.p_transfer:
            ld = self.leader()
            if ld is not None:
                others = [v for v in ld.core.conf.voters if v != ld.id]
                if others:
                    to = rng.choice(others)
                    self.trace(f"transfer n{ld.id} -> n{to}")
                    ld.core.transfer_leadership(to)
                    ld.drain()
        if p.p_snapshot and rng.random() < p.p_snapshot:
            n = rng.choice(self.live() or live)
            if n.alive and n.core.applied > (n.core.snapshot.meta.index if n.core.snapshot else 0):
                snap = n.core.create_snapshot(n.fsm.snapshot_data(), keep_entries=rng.choice((0, 1, 3)))
                n.disk.snapshot = snap
                self.trace(f"n{n.id} snapshot at {snap.meta.index}, log from {n.core.log.offset + 1}")

    # ---- membership ---------------------------------------------------------------------------
    def _operator(self) -> None:
        """What the role manager does: promote caught-up learners, add and remove members."""
        rng = self.rng
        if not self.p.p_member or rng.random() >= self.p.p_member:
            return
        ld = self.leader()
        if ld is None or self.pending_remove is not None:
            return
        core = ld.core
        conf = core.conf
        try:
            for lid in conf.learners:
                pr = core.prs.get(lid)
                if pr is not None and pr.match >= core.commit:
                    self.trace(f"n{ld.id} proposes PROMOTE n{lid}")
                    core.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, lid))
                    return
            if conf.learners:
                return
            nv = len(conf.voters)
            if nv < MAX_VOTERS and (nv <= MIN_VOTERS or rng.random() < 0.5):
                nid = self.next_id
                idx = core.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, nid))
                self.next_id += 1
                self.nodes[nid] = SimNode(self, nid)  # starts empty, no bootstrap
                self.trace(f"n{ld.id} proposes ADD_LEARNER n{nid} at {idx}")
            elif nv > MIN_VOTERS:
                victim = rng.choice(conf.voters)
                idx = core.propose_conf_change(ConfChange(ConfChangeType.REMOVE, victim))
                self.pending_remove = (idx, core.term, victim)
                self.trace(f"n{ld.id} proposes REMOVE n{victim} at {idx}")
        except (ProposalDropped, NotLeader):
            pass
        finally:
            ld.drain()

    def _check_removal(self) -> None:
        """Once a removal is committed, the removed member shuts down for good. If the entry
        was overwritten instead, the operator may try again."""
        if self.pending_remove is None:
            return
        idx, term, victim = self.pending_remove
        t = self.checker.committed.get(idx)
        if t is None:
            return
        self.pending_remove = None
        if t != term:
            self.trace(f"removal of n{victim} at {idx} was overwritten")
            return
        self.trace(f"n{victim} removed (entry {idx} committed)")
        node = self.nodes[victim]
        if node.alive:
            node.crash()
        node.stopped = True
        self.down_until.pop(victim, None)

    # ---- the end: heal and demand progress ------------------------------------------------------
    def heal(self) -> None:
        self.faults = False
        self.net.blocked = set()
        # the network heals but stays imperfect: liveness must hold under fair loss too
        self.net.loss = min(self.net.loss, 0.05)
        self.net.max_delay = min(self.net.max_delay, 1)
        self.trace("heal all, restart all")
        for nid in list(self.down_until):
            del self.down_until[nid]
        for n in self.nodes.values():
            if not n.alive and not n.stopped:
                n.restart()
            elif n.alive and n.torn_next:
                n.torn_next = False
        self.p.p_propose = 0.0
        self.p.p_transfer = 0.0

    def crash_minority(self) -> None:
        """Take down as many voters as the cluster can lose (leader included, maybe): the
        majority left must still make progress. Called once every membership change has
        applied everywhere, so the voter set cannot shift under the count."""
        ld = self.leader()
        assert ld is not None
        voters = list(ld.core.conf.voters)
        k = (len(voters) - 1) // 2
        for nid in self.rng.sample(voters, k):
            self.trace(f"n{nid} stays down")
            node = self.nodes[nid]
            node.crash()
            node.stopped = True

    def members(self, ld: SimNode) -> list[SimNode]:
        ids = ld.core.conf.voters + ld.core.conf.learners
        return [self.nodes[i] for i in ids if i in self.nodes and self.nodes[i].alive]

    def check_liveness(self, data: bytes = b"final") -> None:
        bound = 10 * 2 * self.core_cfg.election_tick + 20
        deadline = self.now + bound
        self.checker.proposed.add(data)
        proposed_to = None  # (leader, term) that took the write; re-proposed only to a new leader
        extended = False
        while self.now < deadline:
            self.run_unit()
            ld = self.leader()
            if ld is None:
                continue
            if proposed_to != (ld.id, ld.core.term):
                if ld.core.lead_transferee:
                    continue
                try:
                    ld.core.propose(data)
                    proposed_to = (ld.id, ld.core.term)
                    ld.drain()
                except ProposalDropped:
                    continue
            members = self.members(ld)
            if all(data in n.fsm.values for n in members):
                return
            if not extended and data in ld.fsm.values:
                # committed: now members far behind (a learner copying a long log through
                # one small append in flight) get time in proportion to what they miss
                extended = True
                lag = ld.core.log.last_index() - min(n.core.applied for n in members)
                deadline = max(deadline, self.now + 2 * (self.net.max_delay + 1) * lag + 2 * self.core_cfg.election_tick)
        ld = self.leader()
        states = ", ".join(
            f"n{n.id}:{'up' if n.alive else 'down'}"
            + (f" {n.core.role.name} t{n.core.term} commit {n.core.commit} applied {n.core.applied} last {n.core.log.last_index()}" if n.alive else "")
            for n in self.nodes.values()
        )
        raise SimFailure(
            f"liveness ({data.decode()}): {bound} time units after healing, no leader committed a fresh write on every live member "
            f"(leader: {ld.id if ld else None}; {states})"
        )

    def run(self) -> None:
        for _ in range(self.p.steps):
            self.run_unit()
        self.checker.full_log_check()
        self.heal()
        self.check_liveness(b"final")
        if self.rng.random() < 0.5:
            self.crash_minority()
            self.check_liveness(b"final-minority-down")
        self.checker.full_log_check()
        self.final_prefix_check()

    def final_prefix_check(self) -> None:
        chains = {}
        for n in self.live():
            a = n.fsm.applied
            want = self.checker.applied.get(a)
            if want is not None and want[3] != n.fsm.chain:
                raise SimFailure(f"n{n.id}'s state at {a} differs from the others'")
            chains[n.id] = a


def run_seed(seed: int, steps: int | None = None, trace: bool | None = None) -> dict:
    """Run one schedule; raise SimFailure (with the replay command) on a violation."""
    if steps is None:
        steps = int(os.environ.get("SIM_STEPS", "200"))
    if trace is None:
        trace = bool(os.environ.get("SIM_TRACE"))
    sim = None
    try:
        sim = Sim(seed, steps=steps, trace=trace)
        sim.run()
    except SimFailure as e:
        raise SimFailure(f"seed {seed} ({sim.p.nodes if sim else '?'} nodes): {e}\n{replay_hint(seed)}") from None
    except Exception as e:  # an exception inside the core is a failure of the seed too
        raise SimFailure(f"seed {seed}: {type(e).__name__}: {e}\n{replay_hint(seed)}") from e
    return {"seed": seed, "nodes": sim.p.nodes, "reads": sim.checker.reads_ok, "commit": sim.checker.max_commit,
            "terms": len(sim.checker.leaders)}


# ==================================================================== hand-driven clusters
class Cluster:
    """A cluster for constructed scenarios: the same driver loop and checker as the random
    simulator, but time and the network are moved by hand. Messages wait in `net.queue` (a
    plain list, FIFO) until `deliver()` runs them; `drop`/`block` lose them."""

    def __init__(self, n: int = 3, *, seed: int = 0, election_tick: int = 10, heartbeat_tick: int = 1,
                 pre_vote: bool = True, check_quorum: bool = True, max_inflight: int = 256,
                 max_msg_bytes: int = 1 << 20, bootstrap: bool = True):
        self.sim = _ManualSim(seed, CoreConfig(election_tick=election_tick, heartbeat_tick=heartbeat_tick,
                                               pre_vote=pre_vote, check_quorum=check_quorum,
                                               max_inflight=max_inflight, max_msg_bytes=max_msg_bytes))
        self.blocked: set[tuple[int, int]] = set()
        if bootstrap:
            members = [ConfChange(ConfChangeType.ADD_VOTER, i) for i in range(1, n + 1)]
            for i in range(1, n + 1):
                node = SimNode(self.sim, i)
                node.core.bootstrap(members)
                self.sim.nodes[i] = node
            for node in self.sim.nodes.values():
                node.drain()

    # ---- access ----------------------------------------------------------------------------
    @property
    def nodes(self) -> dict[int, SimNode]:
        return self.sim.nodes

    @property
    def checker(self) -> Checker:
        return self.sim.checker

    def core(self, nid: int) -> RaftCore:
        return self.sim.nodes[nid].core

    def add_node(self, nid: int) -> SimNode:
        node = SimNode(self.sim, nid)
        self.sim.nodes[nid] = node
        return node

    def add_restored(self, nid: int, *, term: int, entries: list[tuple[int, int]], voters: list[int],
                     vote: int = 0, commit: int = 0) -> SimNode:
        """A member restarted from a persisted state built by hand: `entries` are (index,
        term) pairs whose data is derived from them, so equal pairs are equal entries, and
        the configuration comes from an index-0 snapshot (no conf entries in the log)."""
        node = SimNode(self.sim, nid)
        self.sim.nodes[nid] = node
        node.disk = Disk(
            HardState(term, vote, commit),
            Snapshot(SnapshotMeta(0, 0, ConfState(list(voters), [])), Fsm().snapshot_data()),
            [Entry(t, i, EntryType.NORMAL, b"%d@%d" % (i, t)) for i, t in entries],
        )
        for i, t in entries:
            self.sim.checker.proposed.add(b"%d@%d" % (i, t))
        node.crash()
        node.restart()
        return node

    def log_terms(self, nid: int) -> list[int]:
        """Terms of the member's log from index 1 (None where compacted)."""
        log = self.core(nid).log
        return [log.term(i) for i in range(1, log.last_index() + 1)]

    @property
    def queue(self) -> list[Message]:
        return self.sim.net.msgs

    def leaders(self) -> list[int]:
        return [n.id for n in self.sim.live() if n.core.role == RaftRole.LEADER]

    # ---- driving ----------------------------------------------------------------------------
    def tick(self, nid: int, times: int = 1) -> None:
        node = self.sim.nodes[nid]
        for _ in range(times):
            node.core.tick()
            node.drain()

    def campaign(self, nid: int) -> None:
        """Make `nid` time out now (as if its randomized election timeout fired)."""
        node = self.sim.nodes[nid]
        node.core.campaign()
        node.drain()

    def deliver(self, *, max_msgs: int = 100_000, where=None, hold=None) -> int:
        """Deliver queued messages (and those they cause) until none is left. `where(m)`
        False drops a message; `hold(m)` True leaves it queued for later. Returns how many
        were delivered."""
        n = 0
        net = self.sim.net
        held: list[Message] = []
        while net.msgs and n < max_msgs:
            m = net.msgs.pop(0)
            if hold is not None and hold(m):
                held.append(m)
                continue
            if (m.frm, m.to) in self.blocked or (where is not None and not where(m)):
                net.report_lost(m)
                continue
            n += 1
            net.deliver(m)
        net.msgs[:0] = held
        return n

    def drop_all(self) -> None:
        for m in list(self.sim.net.msgs):
            self.sim.net.report_lost(m)
        self.sim.net.msgs.clear()

    def isolate(self, nid: int) -> None:
        for other in self.sim.nodes:
            if other != nid:
                self.blocked.add((nid, other))
                self.blocked.add((other, nid))

    def heal(self) -> None:
        self.blocked = set()

    def tick_all(self, times: int = 1, *, deliver: bool = True, only=None) -> None:
        for _ in range(times):
            for node in list(self.sim.nodes.values()):
                if node.alive and (only is None or node.id in only):
                    node.core.tick()
                    node.drain()
            if deliver:
                self.deliver()

    def elect(self, nid: int) -> None:
        self.campaign(nid)
        self.deliver()
        assert self.core(nid).role == RaftRole.LEADER, f"n{nid} did not win: {self.core(nid).role.name}"

    def propose(self, nid: int, data: bytes) -> int:
        self.sim.checker.proposed.add(data)
        node = self.sim.nodes[nid]
        idx = node.core.propose(data)
        node.drain()
        return idx

    def crash(self, nid: int) -> None:
        self.sim.nodes[nid].crash()

    def restart(self, nid: int) -> None:
        self.sim.nodes[nid].restart()

    def applied_values(self, nid: int) -> set[bytes]:
        return self.sim.nodes[nid].fsm.values


class _ManualNet:
    def __init__(self, sim: _ManualSim):
        self.sim = sim
        self.msgs: list[Message] = []

    def send(self, m: Message) -> None:
        self.msgs.append(decode_message(encode_message(m)))

    def report_lost(self, m: Message) -> None:
        """What the transport reports for a message it could not deliver."""
        sender = self.sim.nodes.get(m.frm)
        if sender is not None and sender.alive:
            if m.type == MsgType.SNAP:
                sender.core.report_snapshot(m.to, False)
            sender.core.report_unreachable(m.to)
            sender.drain()

    def deliver(self, m: Message) -> None:
        node = self.sim.nodes.get(m.to)
        if node is None or not node.alive:
            self.report_lost(m)
            return
        if m.type in URGENT:
            node.step_urgent(m)
        else:
            node.core.step(m)
        node.drain()
        sender = self.sim.nodes.get(m.frm)
        if m.type == MsgType.SNAP and sender is not None and sender.alive:
            sender.core.report_snapshot(m.to, True)  # the follower's transport answered
            sender.drain()


class _ManualSim(Sim):
    """The parts of `Sim` that nodes and the checker use, without the random schedule."""

    def __init__(self, seed: int, cfg: CoreConfig):  # noqa: D107 - deliberately not calling Sim.__init__
        self.seed = seed
        self.rng = random.Random(seed)
        self.core_cfg = cfg
        self.apply_rng = self.rng
        self.p_partial_apply = 0.0  # constructed scenarios apply whole Readies
        self.p_midflight = 0.0  # and step nothing while one is written
        self.now = 0
        self.tracing = bool(os.environ.get("SIM_TRACE"))
        self.log = []
        self.net = _ManualNet(self)  # type: ignore[assignment]
        self.checker = Checker(self)
        self.nodes = {}
