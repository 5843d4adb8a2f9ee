"""The asyncio driver around the pure core: ticks it, persists, sends, applies.

One loop task owns the core. Everything else (transport callbacks, proposals, ticks) only
queues work and wakes the loop, so the core is never stepped concurrently. While a batch is
being fsynced in a thread, new proposals and messages pile up and go into the next batch: that
is the group commit — one fsync per batch, however many writes it holds. The one exception is
the read path (`_step_now`): a read of this member and the messages of ReadIndex are stepped
as they come, on the same event loop while the loop task waits (also for its fsync), and what
they make is sent at once (core/order.py, URGENT, says why that is safe); a read's barrier then
costs a round of heartbeats instead of two turns of the loop (issue 13).

Proposals carry a small envelope (origin member, tag) so the member where a write was proposed
recognises it when it applies, whichever leader committed it; a follower simply forwards its
proposals to the leader through the core. Tags must never repeat across restarts: entries this
member proposed before a restart may be committed but not yet applied when the new process
starts proposing, and a repeated tag would complete a new request with the old entry's result
(and throw the new entry's own verdict away). So each process counts from a random 64-bit
starting point (`secrets`, not the injected RNG, which tests seed identically on every start);
read contexts use the same counter.

Many writes proposed together (`propose_many`: a client's batch) share one future and one
record: each gets its own entry, tag and result, but completing them costs one callback for the
batch instead of a future and its callbacks per write, which at tens of thousands of writes a
second was most of the leader's CPU.

Disk work (WAL appends with their fsync, snapshots, loading) runs on this member's own thread,
never on the event loop's shared default executor: that pool has a handful of threads
(cores + 4) and the worker's Docker calls block in it too, so a node running a few tasks
(each waits on its container in a thread) once left every WAL write queued behind them for
seconds and every API write answered "no leader". One thread also keeps the writes in order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import secrets
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from ..histogram import Histogram
from .codec import decode_conf_change
from .config import RaftConfig
from .core import URGENT, RaftCore, ReadyOrder
from .errors import CutOff, DiskFull, LeadershipLost, NoQuorum, NotLeader, ProposalDropped, Stopped
from .fsm import StateMachine
from .readlane import ReadView
from .storage import DiskStorage, disk_full
from .types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    RaftRole,
    Ready,
    Snapshot,
)

log = logging.getLogger("swarmkit_py.raft")

_ENVELOPE = struct.Struct(">QQ")  # origin member id, tag (unique across restarts)
_TAG_MASK = (1 << 64) - 1
_CONF_CHANGE = int(EntryType.CONF_CHANGE)
_STEP_BYTES = 32 * 1024
"""Committed entries of others this big are decoded in steps (the state machine's
`prepare_steps`), the loop handed back every `_STEP_S`: decoding one of 500 tasks took a
follower 50-100 ms in one piece, and the leader's read barrier waited for its answer."""
_STEP_S = 0.002


class LatencyHistogram(Histogram):
    """Proposal latency (the default buckets, 1 ms to 5 s)."""


class _Batch:
    """The writes of one `propose_many`: consecutive tags from `first`, one result (or the
    exception that failed it) per write, and one future resolved with them all once every
    write has its outcome."""

    __slots__ = ("fut", "first", "results", "left", "t0", "ok", "latency")

    def __init__(self, fut: asyncio.Future, first: int, n: int, t0: float, latency: Histogram):
        self.fut = fut
        self.first = first
        self.results: list[Any] = [None] * n
        self.left = n
        self.t0 = t0
        self.ok = 0
        self.latency = latency

    def done(self) -> bool:
        return self.fut.done()

    def put(self, tag: int, value: Any, now: float) -> None:
        self.results[(tag - self.first) & _TAG_MASK] = value
        if not isinstance(value, BaseException):
            self.ok += 1
        self.left -= 1
        if not self.left:
            self.finish(now)

    def finish(self, now: float) -> None:
        if self.ok:
            self.latency.observe(now - self.t0, self.ok)
        if not self.fut.done():
            self.fut.set_result(self.results)


def _fail_pending(tag: int, target: asyncio.Future | _Batch, exc: BaseException, now: float) -> None:
    if type(target) is _Batch:
        target.put(tag, exc, now)
    elif not target.done():
        target.set_exception(exc)


def _settle(fut: asyncio.Future | concurrent.futures.Future, result: Any = None,
            exc: BaseException | None = None) -> None:
    """Complete a read's future (asyncio's, or the front thread's concurrent one) unless it is
    done already."""
    if fut.done():
        return
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    except (asyncio.InvalidStateError, concurrent.futures.InvalidStateError):
        pass


async def _await_by(fut: asyncio.Future, deadline: float) -> Any:
    """``await fut``, failed with TimeoutError at `deadline` (loop time) if still pending.
    `asyncio.wait_for` would wake the caller through a second future, one more turn of the
    event loop, and a read waits for two of these; during a large fill a turn of the leader's
    loop took 50-200 ms (issue 13)."""
    handle = asyncio.get_running_loop().call_at(deadline, _expire, fut)
    try:
        return await fut
    finally:
        handle.cancel()


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def wrap_snapshot(book: dict[int, str], fsm_data: bytes) -> bytes:
    """A Raft snapshot carries the members' addresses with the state machine's bytes, so a
    member restored from it can reach everyone even after the log that named them is gone."""
    return msgpack.packb((book, fsm_data), use_bin_type=True)


def unwrap_snapshot(data: bytes) -> tuple[dict[int, str], bytes]:
    book, fsm_data = msgpack.unpackb(data, raw=False, strict_map_key=False)
    return {int(k): v for k, v in book.items()}, fsm_data


def split_envelope(data: bytes) -> bytes:
    """The state machine command inside a proposal's entry data."""
    return data[_ENVELOPE.size :]


@dataclass
class MemberStatus:
    node_id: int
    addr: str
    voter: bool
    reachable: bool
    match: int | None  # leader only


class RaftNode:
    def __init__(
        self,
        node_id: int,
        data_dir: str | Path,
        fsm: StateMachine,
        transport_factory: Callable[[Callable], Any],
        config: RaftConfig | None = None,
        *,
        addr: str = "",
        rng: random.Random | None = None,
        storage: DiskStorage | None = None,
    ):
        """`transport_factory(on_message, on_unreachable=..., on_snapshot_status=...)` builds
        the transport (see transport.Transport), which reports through the two keyword
        callbacks that a peer could not be reached and how a snapshot send ended; `addr` is
        this member's advertised "host:port", recorded in the log when it joins; `storage` an
        already opened DiskStorage (a manager's is encrypted), else a plain one in `data_dir`."""
        self.id = node_id
        self.addr = addr
        self.cfg = config or RaftConfig()
        self.fsm = fsm
        self._steps = getattr(fsm, "prepare_steps", None) if hasattr(fsm, "apply_prepared") else None
        self.storage = storage if storage is not None else DiskStorage(Path(data_dir))
        self._disk: ThreadPoolExecutor | None = None
        self.transport = transport_factory(
            self._on_message, on_unreachable=self._on_unreachable, on_snapshot_status=self._on_snapshot_status
        )
        serve_lane = getattr(self.transport, "serve_lane", None)
        if serve_lane is not None:
            serve_lane(self._term_for_lane, self._commit_for_lane)
        self._rng = rng or random.Random()
        self.core: RaftCore | None = None
        self.read_view: ReadView | None = None
        """Set (on this member's loop) while it leads and has committed an entry of its term,
        or follows a known leader as a voter: what the read lane (raft/readlane.py) needs to
        confirm a read from another thread."""
        self._foreign = (0, 0)
        """(the last entry that a client may have been told is done by anyone but this process,
        the last entry looked at), written together on this member's loop (`_scan_foreign`),
        read whole from any thread (`read_index_now`)."""
        self._order = ReadyOrder(HardState())
        self._last_heard: dict[int, float] = {}
        # the longest recent silence of the leader (decaying, see _note_leader_gap)
        self._gap_from = 0
        self._gap_prev = 0.0
        self._leader_gap = 0.0
        self._leader_gap_at = 0.0
        self._leader_probe_at: float | None = None  # see _leader_host_gone
        self._leader_host_down = False
        self._started_at: float | None = None
        # when this member stepped down as leader for want of a majority (check-quorum), until
        # it knows a leader again: then a write need not wait for an election it cannot see
        self._lost_quorum_at: float | None = None
        self.peers: dict[int, str] = {}
        self._inbox: list = []
        self._props: list[tuple[bytes, int]] = []  # (entry data, tag) not yet given to the core
        # tag -> (future or _Batch, deadline, t0): every write proposed here and not yet answered
        self._pending: dict[int, tuple[asyncio.Future | _Batch, float, float]] = {}
        self._prepared: dict[int, Any] = {}
        """Index -> `prepare_steps(data)`'s result for a committed entry not applied yet."""
        self._local: dict[int, Any] = {}
        """Tag -> what `propose(..., local=)` was given: the state machine's `apply_local`
        gets it with the entry's bytes (MemoryStore: the transaction they were encoded from)."""
        self._next_expiry = float("inf")  # no pending write expires before this
        self._reads: dict[bytes, asyncio.Future] = {}
        self._apply_waiters: list[tuple[int, asyncio.Future]] = []
        self._tag = secrets.randbits(64)  # the next tag (see _new_tags)
        self._ticks = 0
        self._loop_time = time.monotonic  # the event loop's clock (asyncio's default)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stopped = False
        self._closed = False
        self._started = False
        self._campaign_when_able = False
        self.failure: BaseException | None = None  # what stopped the raft loop, if it died
        self._leader_changed = asyncio.Event()
        self.metrics = {"leader_changes": 0, "proposals": 0, "applied": 0, "fsyncs": 0, "stalled_ticks": 0,
                        "writes_failed_on_step_down": 0, "decoded_in_steps": 0}
        self.proposal_latency = LatencyHistogram()
        self.read_latency = LatencyHistogram()
        """Time a linearizable read waited (`read_index`): the leader's confirmation round
        plus applying up to the index it named."""
        self.apply_time = LatencyHistogram()
        """Loop time of each slice of committed entries applied to the store (one per Ready)."""
        self.on_leader_change: Callable[[int, int], None] | None = None  # (leader, term)
        # the raft loop died (`failure`): the member takes no further part until rebuilt
        self.on_fatal: Callable[[BaseException], None] | None = None

    # ================================================================ life cycle
    async def start(
        self,
        *,
        bootstrap: bool = False,
        bootstrap_members: dict[int, str] | None = None,
        peers: dict[int, str] | None = None,
    ) -> None:
        """Load persisted state and run. `bootstrap` founds a new one-member cluster (refused
        when the data dir already holds state); `bootstrap_members` founds a cluster of several
        members statically, like etcd's initial-cluster (ignored once state exists, so the same
        command line restarts a member); `peers` are address hints for a joining member."""
        self._loop = asyncio.get_running_loop()
        self._loop_time = self._loop.time
        st = await self._io(self.storage.load)
        snap = st.snapshot
        if snap is not None:
            book, fsm_data = self._unwrap_snapshot(snap.data)
            self.peers.update(book)
            await self._io(self.fsm.restore, fsm_data)
        self.core = RaftCore(
            self.id, self.cfg.core(), self._rng, hard_state=st.hard_state, snapshot=snap, entries=st.entries
        )
        self._order = ReadyOrder(st.hard_state)
        last = self.core.log.last_index()
        self._foreign = (last, last)  # an earlier process's entries: any may have been acknowledged
        # Addresses of members named in the WAL, committed or not, so this member can answer
        # and campaign before its commit index (not written for every commit) is relearned.
        for e in st.entries:
            self._learn_addresses(e)
        fresh = not (st.entries or snap is not None or st.hard_state.term)
        if bootstrap and not fresh:
            raise ValueError(f"cannot bootstrap: {self.storage.directory} already holds Raft state")
        if bootstrap or (bootstrap_members and fresh):
            members = bootstrap_members or {self.id: self.addr}
            self.core.bootstrap(
                [ConfChange(ConfChangeType.ADD_VOTER, nid, members[nid].encode()) for nid in sorted(members)]
            )
            # A new one-member cluster campaigns as soon as its configuration is applied, as
            # swarmkit's raft node does after bootstrapping (`campaignWhenAble`): waiting out
            # an election timeout (0.3-0.6 s) bought nothing, there is no one else to hear
            # from, and it was on the way of every bootstrap (the founder's API, then every
            # join). A cluster founded with several members waits as before.
            self._campaign_when_able = len(members) == 1
            for nid, a in members.items():
                if nid != self.id:
                    self.peers[nid] = a
        for nid, a in (peers or {}).items():
            self.peers.setdefault(nid, a)
        for nid, a in self.peers.items():
            if nid != self.id:
                self.transport.add_peer(nid, a)
        await self.transport.start()
        self._started = True
        self._started_at = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._run(), name=f"raft-{self.id}-loop"),
            asyncio.create_task(self._ticker(), name=f"raft-{self.id}-ticker"),
        ]

    async def stop(self) -> None:
        """Stop and close; also after the raft loop died (it left the transport and the
        storage open for this)."""
        if self._closed:
            return
        self._closed = True
        self._stopped = True
        self._wake.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._fail_all(Stopped())
        if self._started:
            await self.transport.stop()
        if self._order.pending is not None and self.failure is None:
            try:  # a clean stop keeps the commit index it knew
                await self._io(self.storage.save, self._order.pending, [])
            except Exception:
                log.exception("raft member %d: could not save the commit index on stop", self.id)
        await self._io(self.storage.close)
        disk, self._disk = self._disk, None
        disk.shutdown(wait=False)

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking disk work on this member's disk thread."""
        if self._disk is None:
            self._disk = ThreadPoolExecutor(1, thread_name_prefix=f"raft-{self.id}-disk")
        return await asyncio.get_running_loop().run_in_executor(self._disk, fn, *args)

    # ================================================================ queries
    @property
    def leader_id(self) -> int:
        """0 when none is known, or when this member stopped (it knows nothing any more)."""
        return self.core.leader if self.core and not self._stopped else 0

    @property
    def is_leader(self) -> bool:
        return not self._stopped and self.core is not None and self.core.role == RaftRole.LEADER

    def _stopped_error(self) -> Stopped:
        if self.failure is None:
            return Stopped()
        if disk_full(self.failure):
            return DiskFull(str(self.storage.directory), self.failure)
        return Stopped(f"raft member stopped after a fatal error ({self.failure}); see the log")

    @property
    def term(self) -> int:
        return self.core.term if self.core else 0

    def leader_addr(self) -> str | None:
        return self.peers.get(self.leader_id) if self.leader_id else None

    def members(self) -> list[MemberStatus]:
        """Every member with whether this node can currently reach it; on the leader,
        reachability is what check-quorum uses (heard from within an election timeout)."""
        c = self.core
        if c is None:
            return []
        out = []
        now = time.monotonic()
        window = 2 * self.cfg.election_timeout_s
        for nid in c.conf.voters + c.conf.learners:
            pr = c.prs.get(nid) if c.role == RaftRole.LEADER else None
            if nid == self.id:
                reach = True
            elif pr is not None or nid == c.leader:
                # heard from it lately: an open TCP connection to a host that lost power
                # looks fine for a long time, so the connection state alone would lie
                reach = now - self._last_heard.get(nid, 0.0) < window
            else:
                reach = self.transport.is_reachable(nid)
            out.append(MemberStatus(nid, self.peers.get(nid, ""), nid in c.conf.voters, reach, pr.match if pr else None))
        return out

    def last_contact(self, nid: int) -> float | None:
        """Seconds since this member last received any Raft message from member ``nid``
        (0 for itself; since this member started when it never heard from it; None before
        start). Raft traffic is dense (the leader sends heartbeats every ``heartbeat_ticks``
        and every follower answers), so on the leader this is fresh evidence that a manager's
        process is alive; a new leader also remembers when the old leader last spoke, which
        is how the old leader's host is judged after an election (manager/dispatcher)."""
        if self._started_at is None:
            return None
        if nid == self.id:
            return 0.0
        now = time.monotonic()
        return now - self._last_heard.get(nid, self._started_at)

    # ================================================================ requests
    async def propose(self, data: bytes, timeout: float | None = None, local: Any = None) -> Any:
        """Replicate `data`, apply it, and return the state machine's result. Raises NoQuorum
        when it cannot commit in time, Stopped when the member shuts down. With `local`, the
        entry is applied here (if this process still waits for it then) by the state
        machine's `apply_local(index, data, local)`: `data` as `local` holds it, already in
        memory (every other member, and this one after a restart, decodes `data`)."""
        if self._stopped:
            raise self._stopped_error()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.cfg.proposal_timeout_s)
        await self._wait_for_leader(deadline)
        seq, fut = self._enqueue(data, deadline)
        if local is not None:
            self._local[seq] = local
        try:
            return await fut
        finally:
            self._pending.pop(seq, None)
            if local is not None:
                self._local.pop(seq, None)

    def propose_nowait(self, data: bytes, timeout: float | None = None) -> asyncio.Future:
        """`propose` without a coroutine: the future of the result. With a leader known (the
        usual case) the write is queued at once; otherwise it waits for one in a task."""
        if self._stopped or self.leader_id == 0:
            return asyncio.ensure_future(self.propose(data, timeout))
        loop = asyncio.get_running_loop()
        return self._enqueue(data, loop.time() + (timeout or self.cfg.proposal_timeout_s))[1]

    def _new_tags(self, n: int) -> int:
        """The first of `n` consecutive fresh tags (modulo 2**64)."""
        first = self._tag
        self._tag = (first + n) & _TAG_MASK
        return first

    def _enqueue(self, data: bytes, deadline: float) -> tuple[int, asyncio.Future]:
        # No wait_for per write (a timer and a task each): the ticker expires pending writes,
        # and _apply_committed removes a write from _pending when it completes it.
        loop = asyncio.get_running_loop()
        seq = self._new_tags(1)
        fut = loop.create_future()
        self._pending[seq] = (fut, deadline, loop.time())
        if deadline < self._next_expiry:
            self._next_expiry = deadline
        self._props.append((_ENVELOPE.pack(self.id, seq) + data, seq))
        self.metrics["proposals"] += 1
        self._wake.set()
        return seq, fut

    async def propose_many(self, datas: list[bytes], timeout: float | None = None) -> list[Any]:
        """Replicate and apply many independent commands: each is its own entry and succeeds or
        fails on its own (not a transaction). Returns, in order, each one's state machine
        result or the exception that failed it (NoQuorum, Stopped). Costs one future and one
        completion for the whole batch instead of one per command."""
        if self._stopped:
            raise self._stopped_error()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.cfg.proposal_timeout_s)
        await self._wait_for_leader(deadline)
        return await self._enqueue_many(datas, deadline)

    def propose_many_nowait(self, datas: list[bytes], timeout: float | None = None) -> asyncio.Future:
        """`propose_many` without a coroutine when a leader is known (see propose_nowait)."""
        if self._stopped or self.leader_id == 0:
            return asyncio.ensure_future(self.propose_many(datas, timeout))
        loop = asyncio.get_running_loop()
        return self._enqueue_many(datas, loop.time() + (timeout or self.cfg.proposal_timeout_s))

    def _enqueue_many(self, datas: list[bytes], deadline: float) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        n = len(datas)
        if not n:
            fut.set_result([])
            return fut
        now = loop.time()
        first = self._new_tags(n)
        record = (_Batch(fut, first, n, now, self.proposal_latency), deadline, now)
        pending, props, pack, me = self._pending, self._props, _ENVELOPE.pack, self.id
        for i, data in enumerate(datas):
            tag = (first + i) & _TAG_MASK
            pending[tag] = record
            props.append((pack(me, tag) + data, tag))
        if deadline < self._next_expiry:
            self._next_expiry = deadline
        self.metrics["proposals"] += n
        self._wake.set()
        return fut

    async def read_index(self, timeout: float | None = None) -> None:
        """Return once the local state machine reflects every write committed before the call:
        reads made after this are linearizable (ReadIndex, §6.4 of the thesis)."""
        if self._stopped:
            raise self._stopped_error()  # a dead member's store is frozen: never answer from it
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        deadline = t0 + (timeout or self.cfg.proposal_timeout_s)
        while True:
            await self._wait_for_leader(deadline)
            fut = loop.create_future()
            ctx = self._ask_read(fut)
            try:
                index = await _await_by(fut, deadline)
            except TimeoutError:
                raise NoQuorum("no quorum: a linearizable read could not be confirmed by a majority") from None
            except ProposalDropped:
                if loop.time() >= deadline:
                    raise NoQuorum() from None
                await asyncio.sleep(self.cfg.tick_ms / 1000)
                continue
            finally:
                self._reads.pop(ctx, None)
            await self.wait_applied(index, max(0.0, deadline - loop.time()))
            self.read_latency.observe(loop.time() - t0)
            return

    def read_index_threadsafe(self) -> concurrent.futures.Future:
        """`read_index` for a caller on another thread (the API's front): the future of the
        read index, set from this member's loop as the core releases it. No task and no
        coroutine on this loop: one turn to ask, and the answer set where the core gives it.
        It does not wait for a leader (NoQuorum when none is known, ProposalDropped when a
        leader change drops it: the caller can ask `read_index` then), and the caller waits
        for `applied_index` to reach the index itself, and calls `forget_read` if it stops
        waiting."""
        cf: concurrent.futures.Future = concurrent.futures.Future()
        loop = self._loop
        if loop is None or self._stopped:
            cf.set_exception(self._stopped_error())
            return cf
        loop.call_soon_threadsafe(self._start_read, cf)
        return cf

    def _start_read(self, cf: concurrent.futures.Future) -> None:
        if self._stopped:
            _settle(cf, exc=self._stopped_error())
            return
        if self.leader_id == 0:
            _settle(cf, exc=NoQuorum("no leader known"))
            return
        cf.read_context = self._ask_read(cf)  # type: ignore[attr-defined]

    def _ask_read(self, fut: asyncio.Future | concurrent.futures.Future) -> bytes:
        """Ask the core for a ReadIndex at once (`_step_now`); returns its context, under
        which `fut` is settled."""
        ctx = _ENVELOPE.pack(self.id, self._new_tags(1))
        self._reads[ctx] = fut
        self._step_now(None, ctx)
        return ctx

    def forget_read(self, cf: concurrent.futures.Future) -> None:
        """Drop a `read_index_threadsafe` read its caller stopped waiting for (thread-safe)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: self._reads.pop(getattr(cf, "read_context", b""), None))

    def _scan_foreign(self, entries: list[Entry]) -> None:
        """Move `_foreign` over new log entries. A write proposed by this process is answered
        (acknowledged) here only once applied here (`_apply_committed`), so an entry it
        proposed that is not yet applied here has been acknowledged to nobody; every other
        entry (another member's write, a configuration change) may have been, once
        committed. A leader's no-op answers nobody. Only a leader's read index is taken from
        this, so a member that does not lead counts every entry it is sent (as it would count
        most of them anyway) without looking at each."""
        fm, seen = self._foreign
        last = entries[-1].index
        if self.core.role != RaftRole.LEADER:
            fm = max(fm, last)
        else:
            mine = _ENVELOPE.pack(self.id, 0)[:8]  # the envelope's origin field, this member's
            for e in entries:
                d = e.data
                if e.type != _CONF_CHANGE and (not d or d.startswith(mine)):
                    continue
                if e.index > fm:
                    fm = e.index
        self._foreign = (fm, max(seen, last))

    def read_index_now(self, commit: int) -> int:
        """The index a read that arrived before `commit` (this leader's commit index, read
        first) was read must wait to have applied: every write acknowledged before it is at or
        below `commit` (the lane's or the core's round says so), and one acknowledged by this
        process is applied here already, so it is the last entry up to `commit` that anyone
        else may have acknowledged, or `commit` itself while the entries up to it have not all
        been looked at. Safe on any thread. During a fill nearly every entry is this leader's
        own (the dispatcher's, the scheduler's, the orchestrators'), and a read then need not
        wait for this member's loop to apply the last few (issue 13)."""
        fm, seen = self._foreign
        return commit if commit > seen else min(commit, fm)

    def lone_read_index(self) -> int | None:
        """The read index the core's ReadIndex would release at once, without a round: this
        member leads and is the configuration's only voter (nobody can be elected without its
        vote), so its commit index is one (`RaftCore._leader_read_index`); None otherwise.
        It reads three fields and nothing else, so the API's front thread may call it: a
        single manager then answers reads without waiting for this loop (issue 13)."""
        core = self.core
        if self._stopped or core is None or core.role != RaftRole.LEADER:
            return None
        voters = core.conf.voters
        if len(voters) != 1 or core.id not in voters:
            return None
        return self.read_index_now(core.log.committed)

    def _term_for_lane(self) -> int | None:
        """This member's current term, for another member's read lane (`TERM_METHOD`); None
        before its state is loaded (its persisted term is not known yet)."""
        c = self.core
        return c.term if c is not None else None

    def _commit_for_lane(self) -> list[int] | None:
        """``[term, read index]`` while this member leads and has committed an entry of its
        term, for a follower's read lane (`COMMIT_METHOD`); None otherwise. The read index is
        `read_index_now`'s, raised to what this member has applied (a write it acknowledged
        is there, and the follower has not necessarily applied it)."""
        start = self.lane_read_start()
        if start is None or start[0].leader != self.id:
            return None
        view, index = start
        # the follower must also hold what this process acknowledged: applied here already
        return [view.term, max(index, self.applied_index)]

    def _refresh_read_view(self) -> None:
        """After each Ready: `read_view` names the term, the voters, their addresses and the
        leader, while this member leads and has committed an entry of its term (before that
        its commit index may be short of what earlier leaders committed: thesis §6.4), or
        follows a known leader as a voter; None otherwise."""
        c = self.core
        view = self.read_view
        role = c.role
        voters = tuple(c.conf.voters)
        if self._stopped or c.id not in voters or role not in (RaftRole.LEADER, RaftRole.FOLLOWER):
            if view is not None:
                self.read_view = None
            return
        leader = c.id if role == RaftRole.LEADER else c.leader
        peers = self.peers
        addrs = {n: peers[n] for n in voters if n in peers}
        if (view is not None and view.term == c.term and view.leader == leader and view.voters == voters
                and view.addrs == addrs):
            return
        if leader == c.id:
            ready = c.log.term(c.log.committed) == c.term
        else:
            ready = leader in voters and leader in addrs
        self.read_view = ReadView(c.term, voters, addrs, leader) if ready else None

    def lane_read_start(self) -> tuple[ReadView, int | None] | None:
        """The first step of a read confirmed by the read lane, safe on any thread: the view
        and, on a leader, its read index now (`read_index_now` of its commit index; None on a
        follower: the lane asks its leader); None when this member neither leads (having
        committed in its term) nor follows a known leader as a voter. The commit index is
        read after the view and checked to belong to the view's term, so it is this
        leader's: every write acknowledged before the read arrived is at or below it, unless
        a later leader exists, which the lane's round of terms then rules out. A follower's
        term is checked the same way: it is read after the read arrived, and is the view's."""
        view, c = self.read_view, self.core
        if view is None or c is None or self._stopped:
            return None
        commit = c.log.committed if view.leader == self.id else None
        if c.term != view.term:
            return None
        return view, None if commit is None else self.read_index_now(commit)

    @property
    def applied_index(self) -> int:
        """The last entry applied (the state machine's and the log's, whatever the entry's
        kind); one field, so the API's front thread may read it too."""
        core = self.core
        return core.applied if core is not None else 0

    async def wait_applied(self, index: int, timeout: float) -> None:
        if self.core.applied >= index:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._apply_waiters.append((index, fut))
        try:
            await _await_by(fut, loop.time() + timeout)
        except TimeoutError:
            raise NoQuorum(f"entry {index} was not applied in time") from None

    async def add_member(self, node_id: int, addr: str, timeout: float = 30.0) -> None:
        """Add a member as a learner, wait until it has caught up, then make it a voter: a new
        member never counts towards quorum while it still lacks most of the log."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if node_id not in self.core.conf.learners and node_id not in self.core.conf.voters:
            await self._conf_change(ConfChange(ConfChangeType.ADD_LEARNER, node_id, addr.encode()), deadline)
        while node_id in self.core.conf.learners:
            self._require_leader()
            pr = self.core.prs.get(node_id)
            if pr is not None and pr.match >= self.core.commit:
                await self._conf_change(ConfChange(ConfChangeType.PROMOTE, node_id, addr.encode()), deadline)
                break
            if loop.time() >= deadline:
                raise NoQuorum(f"member {node_id} at {addr} did not catch up within {timeout:.0f}s; is it reachable?")
            await asyncio.sleep(self.cfg.tick_ms / 1000)

    async def remove_member(self, node_id: int, timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        if node_id in self.core.conf.voters or node_id in self.core.conf.learners:
            await self._conf_change(ConfChange(ConfChangeType.REMOVE, node_id), deadline)

    async def transfer_leadership(self, to: int = 0, timeout: float | None = None) -> int:
        """Hand leadership to `to` (or the most caught-up voter) and wait for the new term."""
        self._require_leader()
        c = self.core
        if not to:
            cands = [(pr.match, nid) for nid, pr in c.prs.items() if nid != self.id and nid in c.conf.voters]
            if not cands:
                raise ValueError("no other voter to transfer leadership to")
            to = max(cands)[1]
        c.transfer_leadership(to)
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.cfg.election_timeout_s * 4)
        while loop.time() < deadline:
            if self.core.leader == to:
                return to
            await asyncio.sleep(self.cfg.tick_ms / 1000)
        raise NoQuorum(f"leadership transfer to {to} did not complete")

    async def _conf_change(self, cc: ConfChange, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._require_leader()
            try:
                idx = self.core.propose_conf_change(cc)
                break
            except ProposalDropped:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(self.cfg.tick_ms / 1000)
        self._wake.set()
        await self.wait_applied(idx, max(0.0, deadline - loop.time()))
        # A new leader may have overwritten the entry: check it is really in the config.
        c = self.core
        ok = {
            ConfChangeType.ADD_LEARNER: cc.node_id in c.conf.learners or cc.node_id in c.conf.voters,
            ConfChangeType.PROMOTE: cc.node_id in c.conf.voters,
            ConfChangeType.REMOVE: cc.node_id not in c.conf.voters and cc.node_id not in c.conf.learners,
        }[cc.type]
        if not ok:
            raise NoQuorum(f"membership change {cc.type.name} {cc.node_id} was lost in a leader change; retry")

    def _require_leader(self) -> None:
        if self._stopped:
            raise self._stopped_error()
        if not self.is_leader:
            raise NotLeader(self.leader_id)

    def cut_off(self) -> bool:
        """True while this member, having stepped down as leader because a majority stopped
        answering (check-quorum), has still heard from fewer than a majority of voters
        (itself included) within two election timeouts and knows no leader. Such a member
        cannot take part in any election a write could wait for: as leader it heard every
        voter, and a leader elected elsewhere would reach it (and end this state) as soon
        as it can. Not for a follower that lost its leader: followers hear only the leader,
        so their silence from the others says nothing."""
        c = self.core
        if self._lost_quorum_at is None or c is None or c.leader != 0 or c.role == RaftRole.LEADER:
            return False
        now = time.monotonic()
        window = 2 * self.cfg.election_timeout_s
        voters = c.conf.voters
        heard = sum(1 for v in voters if v == self.id or now - self._last_heard.get(v, 0.0) < window)
        return heard < len(voters) // 2 + 1

    async def _wait_for_leader(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        limit = min(deadline, loop.time() + self.cfg.leader_wait_s)
        while self.leader_id == 0:
            if self._stopped:
                raise self._stopped_error()
            if self.cut_off():
                raise CutOff()
            if loop.time() >= limit:
                raise NoQuorum(
                    "no quorum: this cluster has no leader; fewer than a majority of managers are "
                    "reachable. Bring managers back online (or recover with --force-new-cluster)"
                )
            self._leader_changed.clear()
            try:
                await asyncio.wait_for(self._leader_changed.wait(), max(0.0, limit - loop.time()))
            except TimeoutError:
                pass

    # ================================================================ the loop
    def _on_message(self, m) -> None:
        now = time.monotonic()
        self._last_heard[m.frm] = now
        c = self.core
        if c is not None and m.frm == c.leader:
            self._leader_host_down = False
            if self._gap_from == m.frm:
                self._note_leader_gap(now - self._gap_prev, now)
            self._gap_from, self._gap_prev = m.frm, now
        if m.type in URGENT:
            self._step_now(m)
            return
        self._inbox.append(m)
        self._wake.set()

    def _step_now(self, m: Message | None, read_ctx: bytes = b"") -> None:
        """Step a read-path message (`m`), or a read of this member (`read_ctx`), into the core
        now rather than at the loop's next turn, and send what it makes for the read path at
        once. It runs whenever the loop is suspended, also while a Ready is being written
        (core/order.py, URGENT, says why that is safe): a read's barrier then costs one round
        of heartbeats, not two turns of this loop (issue 13). The rest of what the step made
        goes out with the loop's next Ready."""
        c = self.core
        if self._stopped or c is None:
            if read_ctx:
                fut = self._reads.pop(read_ctx, None)
                if fut is not None:
                    _settle(fut, exc=self._stopped_error())
            return
        try:
            if m is None:
                c.read_index(read_ctx)
            else:
                c.step(m)
            msgs, states, dropped = c.take_urgent()
        except Exception as exc:
            self._die(exc)
            return
        send = self.transport.send
        for out in msgs:
            send(out)
        self._settle_reads(states, dropped)
        if c.has_ready():
            self._wake.set()

    def _settle_reads(self, states: list, dropped: list[bytes]) -> None:
        reads = self._reads
        for rs in states:
            fut = reads.pop(rs.context, None)
            if fut is not None:
                _settle(fut, result=rs.index)
        for ctx in dropped:
            fut = reads.pop(ctx, None)
            if fut is not None:
                _settle(fut, exc=ProposalDropped("read dropped by a leader change"))

    def _on_unreachable(self, node_id: int) -> None:
        """The transport lost messages to `node_id` (connection down, queue full): the leader
        stops pipelining to it and probes (etcd's ReportUnreachable)."""
        self._inbox.append(("unreachable", node_id))
        self._wake.set()

    def _on_snapshot_status(self, node_id: int, ok: bool) -> None:
        """The follower's transport acknowledged the snapshot (`ok`), or the send failed."""
        self._inbox.append(("snapshot", node_id, ok))
        self._wake.set()

    # Half-life of a remembered silence of the leader: a busy spell is remembered for tens of
    # seconds, then a follower's election timeout comes back down.
    GAP_HALF_LIFE_S = 10.0

    def _note_leader_gap(self, gap: float, now: float) -> None:
        decayed = self._leader_gap * 0.5 ** ((now - self._leader_gap_at) / self.GAP_HALF_LIFE_S)
        self._leader_gap = max(gap, decayed)
        self._leader_gap_at = now

    @property
    def election_stretch(self) -> float:
        """How much longer than configured this member's ticks are as a follower: enough for
        its election timeout (election_ticks at least) to outlast two of the longest recent
        silences of its leader, at most ``max_election_stretch``; 1 for a leader.

        A leader's heartbeats come every ``heartbeat_ticks`` ticks of *its* loop, and a busy
        manager's loop turns slowly: on a loaded machine the gaps between heartbeats reached
        the 0.3 s minimum election timeout while the leader was alive and working, and every
        election moved a thousand worker sessions onto the next leader, which then fell behind
        in its turn (issue 13: an election storm at 1,000 nodes). Judged by the leader's own
        recent pace, a busy leader keeps its followers, and an idle cluster keeps its
        sub-second failover. Only liveness changes: a dead leader is replaced later after a
        busy spell (at most ``max_election_stretch`` times the configured timeout)."""
        c = self.core
        if c is None or c.role == RaftRole.LEADER or self.cfg.max_election_stretch <= 1 or self._leader_host_down:
            return 1.0
        gap = self._leader_gap * 0.5 ** ((time.monotonic() - self._leader_gap_at) / self.GAP_HALF_LIFE_S)
        want = 2 * gap / self.cfg.election_timeout_s
        return min(max(1.0, want), self.cfg.max_election_stretch)

    # How long a probe of a silent leader's host may stay unacknowledged before the host is
    # judged down: covers TCP's minimum retransmission timeout (200 ms) twice over.
    PROBE_WAIT_S = 0.5

    def host_silent(self, nid: int, seconds: float = PROBE_WAIT_S) -> bool:
        """Member ``nid``'s host has acknowledged nothing this member sent it for ``seconds``,
        with data in flight and retransmitted (rpc/tcpinfo.py): down or cut off, not merely
        slow. False when the transport cannot tell."""
        silent = getattr(self.transport, "peer_silent_for", None)
        return bool(silent is not None and silent(nid, seconds))

    def _leader_host_gone(self, now: float) -> bool:
        """Follower: is the leader's *host* gone, by kernel evidence? The election stretch
        (``election_stretch``) keeps a busy leader's followers patient, and it is right to:
        a busy leader's host still acknowledges TCP. One whose host lost power does not, and
        then waiting up to ``max_election_stretch`` times the election timeout only delays
        the failover (issue 10: elections 1.5-4.7 s after a leader's power cut on a loaded
        machine). So once the leader has been silent for an election timeout, this member
        sends it a probe on its Raft connection, and if that stays unacknowledged for
        PROBE_WAIT_S (retransmitted) its ticks go back to their configured length until a
        leader speaks again. A leader that is alive but slow answers at the kernel level
        and keeps its stretched followers."""
        c = self.core
        lead = c.leader if c is not None and c.role != RaftRole.LEADER else 0
        if not lead or lead != self._gap_from or now - self._gap_prev < self.cfg.election_timeout_s:
            self._leader_probe_at = None
            return False
        probe = getattr(self.transport, "probe", None)
        if probe is None:
            return False
        if self._leader_probe_at is None or self._leader_probe_at < self._gap_prev:
            self._leader_probe_at = now if probe(lead) else None
            return False
        waited = now - self._leader_probe_at
        return waited >= self.PROBE_WAIT_S and self.host_silent(lead, waited - 0.05)

    async def _ticker(self) -> None:
        """One logical tick per `tick_ms` (times `election_stretch` on a follower) of time
        this member's loop was free to hear.

        Time during which the event loop was held (a long callback, a garbage collection, the
        process not scheduled) does not count: a member whose loop was held heard nothing
        meanwhile (the messages wait in its sockets), so counting that time would make it a
        candidate against a leader that was speaking all along, or make a leader step down for
        want of answers it has not read yet. A late wake-up counts as one tick and the next
        comes a whole period after it, as the dispatcher moves its heartbeat deadlines by its
        own stall. Only liveness depends on ticks (elections, check-quorum, heartbeats);
        safety never does, and reads are confirmed by a round (the core's heartbeats, or the
        read lane's terms: raft/readlane.py), not a lease.
        """
        base = self.cfg.tick_ms / 1000
        loop = asyncio.get_running_loop()
        while not self._stopped:
            if not self._leader_host_down and self._leader_host_gone(time.monotonic()):
                # until a leader speaks again (_on_message): the election may take rounds
                self._leader_host_down = True
                log.warning("raft member %d: leader %d is silent and its host acknowledges "
                            "nothing; election timeout back to %.1fs", self.id, self.core.leader,
                            self.cfg.election_timeout_s)
            period = base * self.election_stretch
            t0 = loop.time()
            await asyncio.sleep(period)
            now = loop.time()
            late = now - t0 - period
            if late > base:
                self.metrics["stalled_ticks"] += int(late / base)
            self._ticks += 1
            self._wake.set()
            self._expire_pending(now)

    def _expire_pending(self, now: float) -> None:
        """Fail writes past their deadline. Timeouts differ (a 10 s join next to 5 s writes),
        so registration order says nothing about which expires first: a pass looks at every
        pending write. It runs only once the earliest deadline it knows of has come, which
        under load is about once per timeout, not once per tick."""
        if now < self._next_expiry:
            return
        expired = []
        nxt = float("inf")
        for seq, (target, deadline, _) in self._pending.items():
            if deadline <= now:
                expired.append((seq, target))
            elif deadline < nxt:
                nxt = deadline
        self._next_expiry = nxt
        for seq, target in expired:
            del self._pending[seq]
            _fail_pending(seq, target, NoQuorum(), now)

    async def _run(self) -> None:
        c = self.core
        while not self._stopped:
            await self._wake.wait()
            self._wake.clear()
            # Messages before ticks: after a stall, an append that arrived during it proves the
            # leader alive, and must count before the stall's ticks can start an election.
            inbox, self._inbox = self._inbox, []
            for m in inbox:
                if type(m) is not tuple:
                    c.step(m)
                elif m[0] == "unreachable":
                    c.report_unreachable(m[1])
                else:
                    c.report_snapshot(m[1], m[2])
            ticks, self._ticks = self._ticks, 0
            for _ in range(min(ticks, 3)):
                c.tick()
            # Bounded batches keep one loop turn short, so heartbeats keep flowing under load.
            props = self._props[: self.cfg.max_batch]
            del self._props[: self.cfg.max_batch]
            if self._props:
                self._wake.set()
            pending = self._pending
            # a write is still wanted while it is pending (not expired, its waiter still there)
            live = [prop for prop in props if prop[1] in pending]
            if live:
                try:
                    c.propose_batch([data for data, _ in live])
                except ProposalDropped as e:
                    exc = NoQuorum(f"write not accepted: {e}")
                    now = self._loop_time()
                    for _, tag in live:
                        p = pending.pop(tag, None)
                        if p is not None:
                            _fail_pending(tag, p[0], exc, now)
            try:
                while c.has_ready():
                    if await self._handle_ready(c.ready()):
                        # Committed entries left to apply: they are applied `apply_slice_ms`
                        # of loop time per Ready, other callers of the loop (the API,
                        # heartbeats) run in between, and messages that arrived meanwhile
                        # (a follower's heartbeat, a read's confirmation) are stepped before
                        # the next slice rather than after the whole backlog.
                        await asyncio.sleep(0)
                        if self._stopped:
                            return
                        if self._inbox or self._ticks or self._props:
                            self._wake.set()
                            break
                if self._campaign_when_able and c.promotable():
                    self._campaign_when_able = False
                    if c.role != RaftRole.LEADER:
                        c.campaign()
                        self._wake.set()
                if self.storage.wants_snapshot:
                    await self._maybe_snapshot(force=True)
            except Exception as exc:
                self._die(exc)
                raise

    def _die(self, exc: Exception) -> None:
        """The raft loop cannot go on (storage failed): stop taking part at once. Nothing that
        was not made durable is acknowledged (the Ready that failed sends nothing), waiters
        get the reason, and the owner hears that leadership is gone and why."""
        if disk_full(exc):
            log.error("raft member %d: the disk is full: %s; stopping (nothing more is "
                      "acknowledged); restart it from its files once space is freed", self.id, exc)
        else:
            log.exception("raft member %d: fatal error in the raft loop; stopping", self.id)
        self._stopped = True
        self.failure = exc
        self._fail_all(self._stopped_error())
        self._leader_changed.set()
        if self.on_leader_change:
            self.on_leader_change(0, self.term)
        if self.on_fatal:
            self.on_fatal(exc)

    async def _handle_ready(self, rd: Ready) -> bool:
        """Carry out `rd`; True when only part of its committed entries were applied (the
        rest come in the next Ready)."""
        c = self.core
        if rd.lost_quorum:
            self._lost_quorum_at = time.monotonic()
        if rd.soft_state is not None:
            if rd.soft_state.leader:
                self._lost_quorum_at = None
            log.info("raft member %d: %s in term %d (leader %d)", self.id, RaftRole(rd.soft_state.role).name.lower(),
                     c.term, rd.soft_state.leader)
            self.metrics["leader_changes"] += 1
            self._leader_changed.set()
            if self.on_leader_change:
                self.on_leader_change(rd.soft_state.leader, c.term)
        if rd.entries:
            self._scan_foreign(rd.entries)  # before they are sent: none is acknowledged unseen
        # The order (and what may skip the fsync) is core/order.py's, shared with tests/sim.
        step = self._order.plan(rd, c.role == RaftRole.LEADER)
        send = self.transport.send
        for m in step.early:
            send(m)
        if rd.snapshot is not None:
            self._prepared.clear()
            await self._io(self.storage.save_snapshot, rd.snapshot)
            book, fsm_data = self._unwrap_snapshot(rd.snapshot.data)
            for nid, a in book.items():
                self._set_peer(nid, a)
            self.fsm.restore(fsm_data)
        if step.write:
            await self._io(self.storage.save, step.hard_state, rd.entries)
            self._order.written(step)
            self.metrics["fsyncs"] += 1
        for m in step.late:
            send(m)
        partial = False
        if rd.committed:
            t0 = time.perf_counter()
            until = t0 + self.cfg.apply_slice_ms / 1000
            busy = await self._decode_in_steps(rd.committed, until) if self._steps else 0.0
            t1 = time.perf_counter()
            done = self._apply_committed(rd.committed, until + (t1 - t0 - busy))
            self.apply_time.observe(busy + time.perf_counter() - t1)
            if done < len(rd.committed):
                # the rest in the next Ready, after this member's messages: see _run
                rd.committed = rd.committed[:done]
                partial = True
        if rd.in_doubt:
            self._fail_in_doubt(rd.in_doubt)
        self._settle_reads(rd.read_states, rd.dropped)
        c.advance(rd)
        self._refresh_read_view()
        if rd.committed:
            self._wake_appliers()
            await self._maybe_snapshot()
        if c.removed and not self._stopped:
            log.warning("raft member %d was removed from the cluster", self.id)
        return partial

    async def _decode_in_steps(self, entries: list[Entry], until: float) -> float:
        """Decode the big committed entries of others that come first in `entries`, in steps,
        handing the loop back every `_STEP_S` (its peers' heartbeats and the read path's
        messages are stepped meanwhile: core/order.py, URGENT, allows that between `ready()`
        and `advance()`), until `until` (perf_counter) or the first small entry, which
        `_apply_committed` decodes at once. Returns the time spent decoding. Safe to yield
        here: nothing applies entries but this Ready, and decoding changes no state that
        anything else reads."""
        prepared, local, me = self._prepared, self._local, self.id
        unpack, skip, steps_of = _ENVELOPE.unpack_from, _ENVELOPE.size, self._steps
        clock = time.perf_counter
        busy = 0.0
        for e in entries:
            data = e.data
            if e.index in prepared or e.type == _CONF_CHANGE or not data:
                continue
            if len(data) < _STEP_BYTES or clock() >= until:
                break
            origin, seq = unpack(data)
            if origin == me and seq in local:
                continue  # applied from the writer's objects
            steps = steps_of(data[skip:])
            start = clock()
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    prepared[e.index] = done.value
                    break
                now = clock()
                if now - start >= _STEP_S:
                    busy += now - start
                    await asyncio.sleep(0)
                    start = clock()
            busy += clock() - start
            self.metrics["decoded_in_steps"] += 1
        return busy

    def _apply_committed(self, entries: list[Entry], until: float = float("inf")) -> int:
        """Apply committed entries in order and answer the writes proposed here, stopping
        after the first entry that ends at or past `until` (perf_counter); returns how many
        were applied. The hot loop of every member (each write passes here once per member),
        hence the locals."""
        pending, me, unpack, fsm_apply = self._pending, self.id, _ENVELOPE.unpack_from, self.fsm.apply
        local, prepared = self._local, self._prepared
        skip = _ENVELOPE.size
        now = self._loop_time()
        latency = self.proposal_latency
        clock = time.perf_counter
        applied = 0
        done = 0
        for e in entries:
            done += 1
            if e.type == _CONF_CHANGE:
                self._apply_conf_change(e)
                continue
            data = e.data
            if not data:
                continue  # a new leader's no-op
            origin, seq = unpack(data)
            if local and origin == me and (tx := local.pop(seq, None)) is not None:
                result = self.fsm.apply_local(e.index, data[skip:], tx)
            elif prepared and (decoded := prepared.pop(e.index, None)) is not None:
                result = self.fsm.apply_prepared(e.index, decoded)
            else:
                result = fsm_apply(e.index, data[skip:])
            applied += 1
            if origin == me:
                p = pending.pop(seq, None)
                if p is not None:
                    target = p[0]
                    if type(target) is _Batch:  # _Batch.put, inlined: once per write
                        target.results[(seq - target.first) & _TAG_MASK] = result
                        target.ok += 1
                        target.left -= 1
                        if not target.left:
                            target.finish(now)
                    elif not target.done():
                        target.set_result(result)
                        latency.observe(now - p[2])
            if clock() >= until:
                break
        self.metrics["applied"] += applied
        return done

    def _apply_conf_change(self, e: Entry) -> None:
        cc = decode_conf_change(e.data)
        self.core.apply_conf_change(cc)
        if cc.type == ConfChangeType.REMOVE:
            if cc.node_id != self.id:
                self.peers.pop(cc.node_id, None)
                self.transport.remove_peer(cc.node_id)
        elif cc.context:
            self._set_peer(cc.node_id, cc.context.decode())

    def _fail_in_doubt(self, entries: list[Entry]) -> None:
        """This member stepped down as leader for want of a majority (check-quorum) with these
        entries uncommitted: the writes proposed here that wait on them fail now with
        LeadershipLost instead of at their timeout (5 s), so the client retries elsewhere
        while the other side elects a leader. If a later leader commits one anyway, applying
        it finds no waiter: its caller was told the outcome was unknown, which stays true."""
        failed = 0
        now = self._loop_time()
        for e in entries:
            if e.type != EntryType.NORMAL or len(e.data) < _ENVELOPE.size:
                continue
            origin, seq = _ENVELOPE.unpack_from(e.data)
            if origin != self.id:
                continue
            p = self._pending.pop(seq, None)
            if p is not None and not p[0].done():
                _fail_pending(seq, p[0], LeadershipLost(), now)
                failed += 1
        self.metrics["writes_failed_on_step_down"] += failed
        log.warning("raft member %d stepped down: no majority answered for an election round; "
                    "%d entries in doubt, %d waiting writes failed", self.id, len(entries), failed)

    def _wake_appliers(self) -> None:
        applied = self.core.applied
        if self._apply_waiters:
            keep = []
            for idx, fut in self._apply_waiters:
                if idx <= applied:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((idx, fut))
            self._apply_waiters = keep

    def _learn_addresses(self, e: Entry) -> None:
        if e.type == EntryType.CONF_CHANGE:
            cc = decode_conf_change(e.data)
            if cc.type != ConfChangeType.REMOVE and cc.context:
                self._set_peer(cc.node_id, cc.context.decode())

    def _set_peer(self, nid: int, addr: str) -> None:
        if nid == self.id or not addr:
            return
        if self.peers.get(nid) != addr:
            self.peers[nid] = addr
            self.transport.add_peer(nid, addr)

    async def _maybe_snapshot(self, force: bool = False) -> None:
        """Snapshot every snapshot_interval applied entries, or now when `force`d (storage asks
        for one to carry out a data-key rotation)."""
        c = self.core
        base = c.snapshot.meta.index if c.snapshot else 0
        if c.applied - base < self.cfg.snapshot_interval and not (force and c.applied > 0):
            return
        t0 = time.perf_counter()
        book = dict(self.peers)
        if self.addr:
            book[self.id] = self.addr
        data = wrap_snapshot(book, self.fsm.snapshot())
        snap: Snapshot = c.create_snapshot(data, keep_entries=self.cfg.keep_entries)
        await self._io(self._persist_snapshot, snap, c.log.offset)
        log.info("raft member %d: snapshot at %d (%d bytes) in %.1f ms", self.id, snap.meta.index, len(data), (time.perf_counter() - t0) * 1000)

    def _persist_snapshot(self, snap: Snapshot, compact_to: int) -> None:
        self.storage.save_snapshot(snap)
        self.storage.compact(compact_to)

    @staticmethod
    def _unwrap_snapshot(data: bytes) -> tuple[dict[int, str], bytes]:
        return unwrap_snapshot(data)

    def _fail_all(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        now = self._loop_time()
        for tag, p in pending.items():
            _fail_pending(tag, p[0], exc, now)
        reads, self._reads = self._reads, {}
        for fut in reads.values():
            _settle(fut, exc=exc)
        for _, fut in self._apply_waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._props = []
        self._apply_waiters = []
