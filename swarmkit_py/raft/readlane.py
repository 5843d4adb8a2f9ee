"""The read lane: a leader confirms a linearizable read without its own event loop (issue 13).

ReadIndex (the thesis, §6.4) answers a read at the leader's commit index once a majority has
confirmed, after the read arrived, that no later leader exists. The core does it with a round
of heartbeats (`RaftCore._leader_read_index`), and that round is sent and counted on the
member's event loop. At 1,000 nodes the leader's loop is held in turns of 100-400 ms (the
dispatcher's reports, the scheduler, applying entries), and a read waited for two of them:
one to be asked, one for the answers to be counted. Measured on the API's reads while 10,000
tasks filled (`scale_bench.py --nodes 1000`): asking waited p90 98 ms / p99 396 ms, the
answers p90 161 ms / p99 577 ms after that; the followers' side took p99 281 ms.

The lane asks the same question on the caller's loop (the API's front thread), with
connections of its own: every other voter is asked its current term (`TERM_METHOD`,
answered inline by the voter's transport), and the read is confirmed once enough voters
answer with a term no later than the leader's to make a majority with the leader itself.

Why that is enough. The leader reads its commit index `c` after the read arrived, in a term
`T` in which it has committed an entry (`RaftNode.lane_read_start`). A write acknowledged
before the read arrived was committed by some leader of term `T'`:
- `T' <= T`: it is in this leader's log (Leader Completeness) at or below its first entry of
  term `T`, or it was committed in term `T` by this leader before `c` was read; either way
  at or below `c`;
- `T' > T`: that leader was elected before the read arrived, by a majority whose terms were
  then `T'` or later for good (terms never go back). That majority shares a member with the
  lane's: the leader, whose term was `T` when it read `c`, or a voter that answered `T` or
  earlier after the read arrived. Neither is possible, so no such write exists.
So the state applied up to `c` holds every write acknowledged before the read, as with the
core's round. No clock is trusted (this is not a lease); only the question's messages
differ. A voter answers its term as it is in memory: it moves to a later term before it
votes in it.

The leader then lowers `c` to the last entry up to it that anyone but its own process may
have acknowledged (`RaftNode.read_index_now`): its own process answers a write only once it
has applied it, so those are applied here already. During a fill nearly every entry is the
leader's own, and the read need not wait for its loop to apply the last few.

A follower's reads go the same way, with the leader's part asked of the leader: its term
`T` and read index (`COMMIT_METHOD`, answered inline by the leader's transport from what
`lane_read_start` gives there, raised to what the leader has applied), and every other
voter's term, as above. The read is confirmed once the leader, this follower (its term,
read after the read arrived, is `T` or earlier) and enough other voters answering `T` or
earlier make a majority. The argument is
the one above: the leader's answer was read after the read arrived, in a term it has
committed in, and the majority's terms rule out a later leader. The core's round asks the
same of a follower's read with two turns of the follower's loop and two or three of the
leader's (forwarding, heartbeats, counting, the answer); the lane costs one of the
leader's, answered inline, and none of the follower's.

The lane declines (None) whenever it cannot confirm: this member neither leads nor follows a
known leader as a voter, a voter answered a later term, the leader did not answer with its
read index, or too few answered in time. The caller then asks the core's round.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..rpc import Connection, RpcUnavailable
from .core.quorum import majority
from .transport import COMMIT_METHOD, TERM_METHOD

REDIAL_S = 1.0
"""After a failed dial, a voter is not dialled again for this long (its answer then counts as
missing: the others may still make the majority)."""


@dataclass(frozen=True, slots=True)
class ReadView:
    """What a member's read lane needs, set by the member on its loop (`RaftNode.read_view`)
    and read whole from any thread."""

    term: int
    voters: tuple[int, ...]
    addrs: dict[int, str]  # the other voters' Raft addresses
    leader: int  # this member, or the leader it follows


class ReadLane:
    """Read confirmations for `node` (a RaftNode), on the event loop of whoever calls
    `read_index` (one loop per lane). `guard` is held while a dialled voter's certificate is
    checked, when that check reads state the node's loop writes (a manager's store)."""

    def __init__(self, node: Any, guard: Any = None) -> None:
        self._node = node
        self._guard = guard
        self._conns: dict[int, tuple[str, Connection]] = {}
        self._dials: dict[int, asyncio.Task] = {}
        self._failed_at: dict[int, float] = {}
        self._closed = False
        self.counts: Counter[tuple[str, str]] = Counter()
        """Reads by (this member's role: "leader" or "follower", "confirmed" or "declined")."""

    @property
    def confirmed(self) -> int:
        return self.counts["leader", "confirmed"] + self.counts["follower", "confirmed"]

    @property
    def declined(self) -> int:
        return self.counts["leader", "declined"] + self.counts["follower", "declined"]

    async def read_index(self, timeout: float) -> int | None:
        """The read index a read may be answered at once the node has applied it, confirmed
        by a majority's terms within `timeout` seconds; None when the lane cannot confirm it
        (the caller asks the core's round instead)."""
        start = None if self._closed else self._node.lane_read_start()
        if start is None:
            return None
        view, commit = start
        me = self._node.id
        if view.leader != me and view.leader not in view.addrs:
            return None
        # the leader's answer, then every other voter's term: [term, read index] or a term
        asks = [asyncio.ensure_future(self._ask(nid, addr, timeout, COMMIT_METHOD if nid == view.leader else TERM_METHOD))
                for nid, addr in view.addrs.items() if nid != me]
        index = await self._confirm(view, commit, asks, timeout)
        role = "leader" if view.leader == me else "follower"
        self.counts[role, "declined" if index is None else "confirmed"] += 1
        return index

    async def _confirm(self, view: ReadView, commit: int | None, asks: list[asyncio.Future],
                       timeout: float) -> int | None:
        """`commit` (or the leader's answered read index) once the answers to `asks` make a
        majority with this member and the leader; None if they cannot."""
        me = self._node.id
        need = majority(len(view.voters))
        term, terms = view.term, []
        granted = 1  # this member: the leader itself, or a follower whose term is the view's
        if view.leader != me:
            term = commit = None  # the leader's, when it answers
        elif granted >= need:
            return commit  # a lone voter
        try:
            for answer in asyncio.as_completed(asks, timeout=timeout):
                try:
                    nid, value = await answer
                except Exception:  # no answer in time, no connection, a refused certificate
                    continue
                if nid == view.leader and view.leader != me:
                    if not (type(value) is list and len(value) == 2 and all(type(v) is int for v in value)
                            and value[0] >= view.term):
                        return None  # it does not lead (or not yet in a term it committed in)
                    term, commit = value
                    granted += 1
                elif type(value) is int:
                    terms.append(value)
                # else: a voter that may not answer (or has not loaded its state)
                if term is None:
                    continue
                if any(t > term for t in terms):
                    return None  # a later term exists: the leader may have been replaced
                if granted + len(terms) >= need:
                    return commit
        finally:
            for ask in asks:
                ask.cancel()
        return None

    async def _ask(self, nid: int, addr: str, timeout: float, method: str) -> tuple[int, Any]:
        entry = self._conns.get(nid)
        if entry is not None and entry[0] == addr and not entry[1].is_closed:
            conn = entry[1]
        else:
            conn = await asyncio.shield(self._dial(nid, addr))
        return nid, await conn.call(method, None, timeout=timeout)

    def _dial(self, nid: int, addr: str) -> asyncio.Task:
        """One dial per voter at a time, shared by the reads that need it, and kept (in
        `_dialed`) even when those reads stopped waiting."""
        task = self._dials.get(nid)
        if task is not None and not task.done():
            return task
        failed = self._failed_at.get(nid)
        if failed is not None and time.monotonic() - failed < REDIAL_S:
            raise RpcUnavailable(f"raft member {nid} at {addr}: its last dial failed; not redialled yet")
        task = asyncio.ensure_future(self._node.transport.open_lane(nid, addr, self._guard))
        self._dials[nid] = task
        task.add_done_callback(lambda t: self._dialed(nid, addr, t))
        return task

    def _dialed(self, nid: int, addr: str, task: asyncio.Task) -> None:
        if self._dials.get(nid) is task:
            del self._dials[nid]
        if task.cancelled() or task.exception() is not None:
            self._failed_at[nid] = time.monotonic()
            return
        self._failed_at.pop(nid, None)
        conn = task.result()
        if self._closed:
            conn.close("the read lane is closed")
            return
        old = self._conns.get(nid)
        self._conns[nid] = (addr, conn)
        if old is not None and old[1] is not conn:
            old[1].close("replaced by a new connection")

    async def aclose(self) -> None:
        """Close every connection and dial (idempotent)."""
        self._closed = True
        for task in list(self._dials.values()):
            task.cancel()
        conns, self._conns = list(self._conns.values()), {}
        await asyncio.gather(*(conn.aclose("the read lane is closed") for _, conn in conns), return_exceptions=True)


__all__ = ["REDIAL_S", "ReadLane", "ReadView"]
