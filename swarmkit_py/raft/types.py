"""Value types shared by the Raft core, its storage, transport and driver.

They are plain slotted dataclasses (an entry: a named tuple), not pydantic models: they sit on the hot path (every
append, every heartbeat) and never cross a trust boundary unvalidated — the transport only
accepts them from peers whose certificate the CA issued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial
from itertools import count, repeat
from typing import NamedTuple


class EntryType(IntEnum):
    NORMAL = 0  # data is an opaque command for the state machine; b"" is the leader's no-op
    CONF_CHANGE = 1  # data is an encoded ConfChange


class Entry(NamedTuple):
    """One log entry. A tuple, so that a batch of them is built in C (`new_entries`,
    `entries_from_rows`) rather than by a Python ``__init__`` per entry, which was the largest
    cost of a follower (decoding appends) and of a leader taking in proposals; entries are
    never changed once built (a leader numbers new ones by building them)."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


_new_entry = partial(tuple.__new__, Entry)


def new_entries(term: int, first: int, etype: EntryType, datas: list[bytes]) -> list[Entry]:
    """Entries of `etype` carrying `datas`, numbered from `first` in `term` (0, 0 for
    proposals not yet in a log)."""
    return list(map(_new_entry, zip(repeat(term), count(first) if first else repeat(0), repeat(etype), datas)))


def entries_from_rows(rows: list) -> list[Entry]:
    """Entries from decoded ``[term, index, type, data]`` rows (codec); ValueError for a row
    of another length."""
    if rows and set(map(len, rows)) != {4}:
        raise ValueError("a log entry has exactly 4 fields (term, index, type, data)")
    return list(map(_new_entry, rows))


@dataclass(slots=True)
class HardState:
    """What must be on disk before the node answers anyone: term, vote and commit index."""

    term: int = 0
    vote: int = 0  # 0 = voted for nobody in this term
    commit: int = 0


class ConfChangeType(IntEnum):
    ADD_LEARNER = 0  # joins, receives the log, does not vote
    PROMOTE = 1  # learner -> voter (the leader only proposes it once the learner caught up)
    REMOVE = 2  # voter or learner leaves
    ADD_VOTER = 3  # only for bootstrapping a new cluster's first member(s), never proposed


@dataclass(slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: int
    context: bytes = b""  # opaque to raft: the control plane stores the member's address here


@dataclass(slots=True)
class ConfState:
    voters: list[int] = field(default_factory=list)
    learners: list[int] = field(default_factory=list)

    def copy(self) -> ConfState:
        return ConfState(list(self.voters), list(self.learners))


@dataclass(slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf: ConfState = field(default_factory=ConfState)


@dataclass(slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes = b""


class MsgType(IntEnum):
    APP = 0  # append entries (also the heartbeat when empty)
    APP_RESP = 1
    VOTE = 2
    VOTE_RESP = 3
    PRE_VOTE = 4
    PRE_VOTE_RESP = 5
    SNAP = 6  # install snapshot
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    TIMEOUT_NOW = 9  # leader transfer: "start an election now, skipping pre-vote"
    PROP = 10  # a follower forwards proposals to the leader (entries carry only data/type)
    READ_INDEX = 11  # a follower asks the leader for a read index (context identifies it)
    READ_INDEX_RESP = 12


@dataclass(slots=True)
class Message:
    type: MsgType
    frm: int
    to: int
    term: int = 0
    log_term: int = 0  # APP: term of entry at `index`; VOTE: last log term; APP_RESP reject: hint term
    index: int = 0  # APP: index preceding entries; VOTE: last log index; resp: matched/hint index
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0  # APP_RESP reject: follower's last index (or conflict index)
    snapshot: Snapshot | None = None
    context: bytes = b""  # READ_INDEX / HEARTBEAT: the read request's id; VOTE: b"transfer"


@dataclass(slots=True)
class ReadState:
    """A linearizable read may be served once the local applied index reaches `index`."""

    index: int
    context: bytes


class RaftRole(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


@dataclass(slots=True)
class SoftState:
    leader: int = 0
    role: RaftRole = RaftRole.FOLLOWER


@dataclass(slots=True)
class Ready:
    """Everything the driver must do, in this order: persist `snapshot`, `entries` and
    `hard_state` (fsync), then send `messages`, then apply `committed` (a CONF_CHANGE entry
    through `core.apply_conf_change`), then call `core.advance(ready)`.

    Sending only after the fsync is what makes an acknowledgement mean "durable". The two
    refinements a driver may use, and the simulator checks, are in `core/order.py`.
    """

    soft_state: SoftState | None = None  # set when leader or role changed
    hard_state: HardState | None = None  # set when it changed
    entries: list[Entry] = field(default_factory=list)  # to append to the WAL; may overwrite a suffix
    snapshot: Snapshot | None = None  # received from the leader; persist and restore the FSM from it
    committed: list[Entry] = field(default_factory=list)  # to apply, in order
    messages: list[Message] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    dropped: list[bytes] = field(default_factory=list)  # contexts of read requests that failed
    # A leader that stepped down because a majority stopped answering (check-quorum): the
    # entries it had appended past its commit index. Nothing says whether a later leader will
    # commit them, and this member will not learn it while it stays cut off: the driver fails
    # the writes waiting on them at once (their outcome is unknown), instead of at their
    # timeout. Not set for other step-downs (a higher term, a transfer): there the new leader
    # usually holds the entries and commits them soon.
    in_doubt: list[Entry] = field(default_factory=list)
    lost_quorum: bool = False  # that step-down happened (with or without entries in doubt)

    def empty(self) -> bool:
        return not (
            self.soft_state
            or self.hard_state
            or self.entries
            or self.snapshot
            or self.committed
            or self.messages
            or self.read_states
            or self.dropped
            or self.in_doubt
            or self.lost_quorum
        )
