"""How a driver carries out one `Ready`: what it may send before its write, what it must write.

Pure like the rest of the core, so the asyncio driver (`raft/node.py`) and the seeded simulator
(`tests/sim`) run the very same decisions, and the simulator's safety checker exercises the
ordering production uses rather than a simpler one. Two departures from the plain "write and
fsync, then send" of `Ready`:

- A leader sends appends, heartbeats, snapshots and TIMEOUT_NOW before its own fsync (Raft
  thesis §10.2.1). They carry only the leader's term, which was made durable before its vote
  requests left, and the leader counts its own copy towards a commit only once it is written
  (`RaftCore.advance`). Acknowledgements and votes still leave only after the write.
- A hard state whose only change is the commit index is not written on its own (etcd's
  MustSync rule): a restarted member relearns the commit index from the leader. It rides along
  with the next write of entries or of term/vote, and a clean stop writes it (`pending`).

And one for the read path (`URGENT`, `RaftCore.take_urgent`): a driver steps the messages of
ReadIndex (the read's heartbeats and their acks, a follower's forwarded read and its answer) as
they arrive, also while a Ready is being written (between `ready()` and `advance()`, which the
core allows, as etcd-io/raft's node does while its storage writes), and sends what they make at
once, without waiting for any write. None of them acknowledges anything a write holds:
- a heartbeat carries the leader's term (durable before its votes were asked) and a commit
  index capped by the follower's acknowledged match;
- a heartbeat's ack says "I know no newer leader than you" as of the moment it leaves, which
  is what a read's quorum check needs; losing a not yet written term in a crash afterwards
  changes nothing about that moment (it grants no vote and acknowledges no entry);
- a read index is the leader's commit index, counted from durable copies only;
- a forwarded read request carries nothing but its context.
The reads they release are settled at once; their waiters wait for the apply themselves.
Everything else they make (an empty append to a lagging follower, ...) waits for the next Ready.
The seeded simulator steps them the same way, also in the middle of a Ready's write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..types import HardState, Message, MsgType, Ready

EARLY = frozenset({MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP, MsgType.TIMEOUT_NOW})
URGENT = frozenset({MsgType.HEARTBEAT, MsgType.HEARTBEAT_RESP, MsgType.READ_INDEX, MsgType.READ_INDEX_RESP})


@dataclass(slots=True)
class Step:
    """One Ready, in the order to carry it out: send `early`, write the snapshot, write
    `rd.entries` with `hard_state` and fsync if `write`, send `late`, apply, advance."""

    early: list[Message] = field(default_factory=list)
    late: list[Message] = field(default_factory=list)
    hard_state: HardState | None = None
    write: bool = False


class ReadyOrder:
    """Remembers which term/vote is on disk and the newest commit index that is not."""

    __slots__ = ("_synced", "pending")

    def __init__(self, persisted: HardState):
        self._synced = (persisted.term, persisted.vote)
        self.pending: HardState | None = None  # newest hard state not written yet (commit only)

    def plan(self, rd: Ready, leader: bool) -> Step:
        """`leader`: the member's role after `ready()` was called."""
        step = Step()
        if leader:
            for m in rd.messages:
                (step.early if m.type in EARLY else step.late).append(m)
        else:
            step.late = rd.messages
        hs = rd.hard_state
        if hs is not None and (hs.term, hs.vote) == self._synced and not rd.entries:
            self.pending = hs
            hs = None
        elif hs is None and rd.entries:
            hs = self.pending
        step.hard_state = hs
        step.write = hs is not None or bool(rd.entries)
        return step

    def written(self, step: Step) -> None:
        """The write of `step` is durable."""
        if step.write:
            self.pending = None
            if step.hard_state is not None:
                self._synced = (step.hard_state.term, step.hard_state.vote)
