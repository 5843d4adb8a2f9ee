"""The in-memory Raft log of one member, and what of it is durable, committed and applied.

The whole log after the last compaction point is kept in memory (the control plane's state is
small and compacted often); the WAL mirrors it on disk. `stable` tracks how much of it the
driver has persisted, so `Ready` hands out exactly the unpersisted suffix once.
"""

from __future__ import annotations

from operator import attrgetter

from ..types import Entry, Snapshot

_data = attrgetter("data")


class RaftLog:
    __slots__ = ("offset", "offset_term", "entries", "committed", "applied", "stable", "pending_snapshot")

    def __init__(self, offset: int = 0, offset_term: int = 0, entries: list[Entry] | None = None):
        self.offset = offset  # index of the last compacted entry (entries[0].index == offset + 1)
        self.offset_term = offset_term
        self.entries: list[Entry] = list(entries or [])
        self.committed = offset
        self.applied = offset
        self.stable = self.last_index()  # entries up to here are on disk
        self.pending_snapshot: Snapshot | None = None  # received, not yet persisted

    # --- reading ---------------------------------------------------------------------
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.offset

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def first_index(self) -> int:
        return self.offset + 1

    def term(self, index: int) -> int | None:
        """Term of the entry at `index`; None when compacted away or beyond the end."""
        if index == self.offset:
            return self.offset_term
        if index < self.offset or index > self.last_index():
            return None
        return self.entries[index - self.offset - 1].term

    def match_term(self, index: int, term: int) -> bool:
        t = self.term(index)
        return t is not None and t == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """The election restriction (§5.4.1): a candidate's log must be at least as current."""
        lt = self.last_term()
        return last_term > lt or (last_term == lt and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi), at least one, stopping once `max_bytes` of payload is reached."""
        base = self.offset + 1
        run = self.entries[lo - base : hi - base]
        # the usual case, all of it fits: counted without a Python step per entry (a leader
        # slices the same new entries once per follower)
        if sum(map(len, map(_data, run))) + 16 * len(run) <= max_bytes:
            return run
        out: list[Entry] = []
        size = 0
        for e in run:
            size += len(e.data) + 16
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.offset - 1]

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest i <= index whose term is <= `term`: where a rejected leader should probe
        next, skipping a whole term of divergent entries per round trip."""
        index = min(index, self.last_index())
        while index > self.offset:
            t = self.term(index)
            if t is not None and t <= term:
                return index, t
            index -= 1
        return self.offset, self.offset_term

    # --- writing ---------------------------------------------------------------------
    def append(self, entries: list[Entry]) -> None:
        """Append after the last entry, or overwrite a conflicting suffix."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.last_index():
            del self.entries[first - self.offset - 1 :]
            if self.stable >= first:
                self.stable = first - 1
        self.entries.extend(entries)

    def maybe_append(self, index: int, log_term: int, committed: int, entries: list[Entry]) -> int | None:
        """Follower side of AppendEntries. Returns the index of the last new entry, or None
        when the entry preceding them does not match (the leader must back off)."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = 0
        for e in entries:
            t = self.term(e.index)
            if t is None and e.index > self.last_index() or (t is not None and t != e.term):
                conflict = e.index
                break
        if conflict:
            if conflict <= self.committed:
                raise AssertionError(f"entry {conflict} conflicts with committed entry (commit {self.committed})")
            self.append(entries[conflict - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index

    def restore(self, snap: Snapshot) -> None:
        """Throw the log away and start over from a snapshot sent by the leader."""
        self.offset = snap.meta.index
        self.offset_term = snap.meta.term
        self.entries = []
        self.committed = snap.meta.index
        self.applied = snap.meta.index
        self.stable = snap.meta.index
        self.pending_snapshot = snap

    def compact(self, index: int) -> None:
        """Forget entries up to `index` (already captured by a snapshot)."""
        if index <= self.offset:
            return
        if index > self.applied:
            raise AssertionError(f"compact {index} beyond applied {self.applied}")
        term = self.term(index)
        assert term is not None
        del self.entries[: index - self.offset]
        self.offset, self.offset_term = index, term

    # --- handing out -----------------------------------------------------------------
    def unstable_entries(self) -> list[Entry]:
        if self.stable >= self.last_index():
            return []
        return self.entries[self.stable - self.offset :]

    def next_committed(self, max_count: int = 1 << 30) -> list[Entry]:
        lo = max(self.applied, self.offset) + 1
        hi = min(self.committed, lo + max_count - 1)
        if hi < lo:
            return []
        base = self.offset + 1
        return self.entries[lo - base : hi - base + 1]

    def stable_to(self, index: int, term: int) -> None:
        if self.match_term(index, term) and index > self.stable:
            self.stable = index
