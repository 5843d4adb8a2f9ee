"""What the leader knows of each follower's log, and how fast it may send to it.

Three states, as in etcd-io/raft's tracker: PROBE sends one append per heartbeat until the
follower's match point is found; REPLICATE pipelines appends optimistically, bounded by a window
of messages in flight so a slow follower cannot make the leader buffer without limit; SNAPSHOT
waits for a snapshot install to finish.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Progress:
    __slots__ = (
        "match",
        "next",
        "state",
        "paused",
        "pending_snapshot",
        "recent_active",
        "inflight",
        "max_inflight",
        "sent_commit",
        "is_learner",
    )

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool = False):
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.paused = False  # PROBE: one append is out, wait for its answer
        self.pending_snapshot = 0
        self.recent_active = False  # heard from since the last check-quorum round
        self.inflight: deque[int] = deque()  # last index of each append in flight
        self.max_inflight = max_inflight
        self.sent_commit = 0
        self.is_learner = is_learner

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.paused = False
        self.pending_snapshot = 0
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.paused = False
        self.pending_snapshot = 0
        self.inflight.clear()

    def become_snapshot(self, index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.paused = False
        self.inflight.clear()

    def maybe_update(self, index: int) -> bool:
        """An acknowledgement up to `index`; False when it is stale (already known)."""
        updated = False
        if index > self.match:
            self.match = index
            updated = True
            self.paused = False
        if index + 1 > self.next:
            self.next = index + 1
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        return updated

    def maybe_decr_to(self, rejected: int, hint_next: int) -> bool:
        """A rejection of the append that followed `rejected`; move `next` back."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # stale rejection
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # stale: not the probe we sent
        self.next = max(min(rejected, hint_next), self.match + 1, 1)
        self.paused = False
        return True

    def sent(self, last_index: int, count: int) -> None:
        if self.state == ProgressState.REPLICATE:
            if count:
                self.next = last_index + 1
                self.inflight.append(last_index)
        elif self.state == ProgressState.PROBE:
            self.paused = True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.paused
        if self.state == ProgressState.REPLICATE:
            return len(self.inflight) >= self.max_inflight
        return True
