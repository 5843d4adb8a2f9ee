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
core's round. No clock is trusted (this is not a lease); only the question's messages differ.
A voter answers its term as it is in memory: it moves to a later term before it votes in it.

The lane declines (None) whenever it cannot confirm: this member does not lead, a voter
answered a later term, or too few answered in time. The caller then asks the core's round.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ..rpc import Connection, RpcUnavailable
from .core.quorum import majority
from .transport import TERM_METHOD

REDIAL_S = 1.0
"""After a failed dial, a voter is not dialled again for this long (its answer then counts as
missing: the others may still make the majority)."""


@dataclass(frozen=True, slots=True)
class ReadView:
    """What a leader's read lane needs, set by the leader on its loop (`RaftNode.read_view`)
    and read whole from any thread."""

    term: int
    voters: tuple[int, ...]
    addrs: dict[int, str]  # the other voters' Raft addresses


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
        self.confirmed = 0
        self.declined = 0

    async def read_index(self, timeout: float) -> int | None:
        """The commit index a read may be answered at once the node has applied it, confirmed
        by a majority's terms within `timeout` seconds; None when the lane cannot confirm it
        (the caller asks the core's round instead)."""
        start = None if self._closed else self._node.lane_read_start()
        if start is None:
            return None
        view, commit = start
        me = self._node.id
        need = majority(len(view.voters)) - (1 if me in view.voters else 0)
        if need <= 0:
            self.confirmed += 1
            return commit
        asks = [asyncio.ensure_future(self._ask(nid, addr, timeout))
                for nid, addr in view.addrs.items() if nid != me]
        granted = 0
        try:
            for answer in asyncio.as_completed(asks, timeout=timeout):
                try:
                    term = await answer
                except Exception:  # no answer in time, no connection, a refused certificate
                    continue
                if type(term) is not int:
                    continue  # a voter that may not answer (or has not loaded its state)
                if term > view.term:
                    break  # a later term exists: this member is no longer sure it leads
                granted += 1
                if granted >= need:
                    self.confirmed += 1
                    return commit
        finally:
            for ask in asks:
                ask.cancel()
        self.declined += 1
        return None

    async def _ask(self, nid: int, addr: str, timeout: float) -> Any:
        entry = self._conns.get(nid)
        if entry is not None and entry[0] == addr and not entry[1].is_closed:
            conn = entry[1]
        else:
            conn = await asyncio.shield(self._dial(nid, addr))
        return await conn.call(TERM_METHOD, None, timeout=timeout)

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
