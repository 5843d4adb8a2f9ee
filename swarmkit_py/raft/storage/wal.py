"""The write-ahead log: segment files of checksummed records, replayed on start.

Segments are named ``wal-<seq>-<first index>.log``. The sequence number orders them, not the
index: after Raft overwrites a conflicting tail, a new segment can start at an index lower than
its predecessor's. A segment is created complete with its opening record (temp file, fsync,
rename, fsync dir), so a crash never leaves a segment without one, and it is rotated *before*
the batch that would overflow it, so the file name is the index of the first batch it holds.

Overwriting a suffix needs no marker record: a batch whose first index is at or below the last
one replaces everything from that index on, at replay exactly as in the Raft core. The writer
keeps only the per-segment highest index (to know which segments compaction may drop) and the
last index (to reject gaps); the entries themselves live in the core's memory.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
from cryptography.exceptions import InvalidTag

from ..types import Entry, EntryType, HardState
from . import records
from .crypto import NONCE_BYTES, Keyring, seal, unseal
from .errors import StorageFailedError, WALCorruptError
from .fsutil import fdatasync, fsync_dir, write_all, write_file_atomically

FORMAT_VERSION = 1  # plaintext segments (and those written before encryption existed)
ENCRYPTED_FORMAT_VERSION = 2  # the opening record names the data key sealing the records after it
_SEAL_OVERHEAD = NONCE_BYTES + 16  # nonce + GCM tag
_AAD = struct.Struct("<BQ")  # record type, segment seq: a sealed record cannot be moved elsewhere
_SEGMENT_RE = re.compile(r"^wal-(\d+)-(\d+)\.log$")
_ENTRY_TYPES = {int(t): t for t in EntryType}
# A record that passes its checksum yet fails to decode was written by different code, not
# damaged by the disk; replay reports it as corruption all the same, naming the record.
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException)


def segment_name(seq: int, first_index: int) -> str:
    return f"wal-{seq:08d}-{first_index:016d}.log"


@dataclass(slots=True)
class Segment:
    seq: int
    first_index: int
    path: Path
    # Highest log index any record in the segment mentions: once a snapshot covers it, no
    # replay needs the segment any more.
    max_index: int
    key_id: int = 0  # data key sealing the records after the opening one; 0 = plaintext


@dataclass(slots=True)
class Replay:
    hard_state: HardState | None
    base: int  # entries[k].index == base + 1 + k
    entries: list[Entry] = field(default_factory=list)


class WAL:
    """Not thread-safe: the driver makes one storage call at a time from its worker thread."""

    def __init__(
        self,
        directory: Path,
        segment_bytes: int,
        logger: logging.Logger,
        keyring: Keyring | None = None,
    ) -> None:
        if segment_bytes < 4096:
            raise ValueError("segment_bytes must be at least 4096")
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._log = logger
        self._segments: list[Segment] = []
        self._fd: int | None = None
        self._size = 0  # bytes in the open segment
        self._holds_records = False  # the open segment holds more than its opening record
        self._hard_state: tuple | None = None  # last durable one; opens every new segment
        self._failed: BaseException | None = None
        self._packer = msgpack.Packer(use_bin_type=True)
        self._keys = keyring  # None: write plaintext (and refuse to read sealed segments)
        self.last_index = 0  # highest index the log holds (or a snapshot it was told about)

    # ---- reading -------------------------------------------------------------------------

    def replay(self) -> Replay:
        """Read every segment, cut a torn tail off the last one, and get ready to append."""
        self.close()
        self._failed = None
        for stray in self._dir.glob("wal-*.log.tmp"):  # a segment creation the crash interrupted
            stray.unlink()
        found = self._list_segments()
        for prev, cur in zip(found, found[1:], strict=False):
            if cur.seq != prev.seq + 1:
                raise WALCorruptError(
                    cur.path,
                    None,
                    f"segment {prev.seq + 1} is missing between {prev.path.name} and {cur.path.name}",
                )

        log = _LogBuilder()
        kept: list[Segment] = []
        last_holds_records = False
        for i, seg in enumerate(found):
            is_last = i == len(found) - 1
            data = seg.path.read_bytes()
            recs, damage = records.scan(data)
            if damage is not None:
                if not (is_last and damage.torn):
                    if damage.torn:
                        reason = damage.reason + " in a segment that is not the last one"
                    else:
                        reason = damage.reason
                    raise WALCorruptError(seg.path, damage.offset, reason)
                self._log.warning(
                    "%s: dropping the torn final record at byte offset %d (%s, %d bytes): it is "
                    "the write in flight when the process stopped and was never acknowledged",
                    seg.path,
                    damage.offset,
                    damage.reason,
                    len(data) - damage.offset,
                )
                self._truncate(seg.path, damage.offset)
            if not recs:
                if is_last:
                    # Only reachable if the disk lost part of an atomically created file; its
                    # opening record repeats state the previous segment already holds.
                    self._log.warning("%s: removing a segment with no readable record", seg.path)
                    seg.path.unlink()
                    fsync_dir(self._dir)
                    continue
                raise WALCorruptError(seg.path, 0, "segment is empty")

            for off, rtype, payload in recs:
                try:
                    if off != 0 and seg.key_id:
                        payload = self._unseal(seg, off, rtype, payload)
                    body = msgpack.unpackb(payload, raw=False, use_list=False)
                    if off == 0:
                        log.opening(seg, rtype, body)
                    elif rtype == records.BATCH:
                        log.batch(seg, body)
                    elif rtype == records.SNAPSHOT:
                        log.snapshot(seg, body)
                    else:
                        raise _LogError("a segment record after the first")
                except _LogError as exc:
                    raise WALCorruptError(seg.path, off, str(exc)) from None
                except _DECODE_ERRORS as exc:
                    raise WALCorruptError(
                        seg.path,
                        off,
                        f"record passes its checksum but does not decode ({exc}); was it written "
                        "by an incompatible version?",
                    ) from exc
            kept.append(seg)
            last_holds_records = len(recs) > 1

        self._segments = kept
        self._hard_state = log.hard_state
        self.last_index = log.base + len(log.entries)
        if kept:
            self._open_for_append(kept[-1].path, last_holds_records)
        hs = None if log.hard_state is None else HardState(*log.hard_state)
        return Replay(hs, log.base, log.entries)

    def _unseal(self, seg: Segment, off: int, rtype: int, payload) -> bytes:
        aead = self._keys.aead(seg.key_id) if self._keys is not None else None
        if aead is None:
            why = (
                "storage was opened without encryption"
                if self._keys is None
                else f"deks.json does not hold data key {seg.key_id}"
            )
            raise WALCorruptError(seg.path, 0, f"segment is encrypted with data key {seg.key_id} but {why}")
        try:
            return unseal(aead, _AAD.pack(rtype, seg.seq), payload)
        except InvalidTag:
            raise WALCorruptError(
                seg.path,
                off,
                f"record passes its checksum but fails authentication with data key {seg.key_id} "
                "(altered, or moved from another file)",
            ) from None

    def needs_reencryption(self) -> bool:
        """Some segment is not sealed with the current data key (plaintext from before
        encryption, or a key being retired)."""
        current = self._keys.current if self._keys is not None else 0
        return any(s.key_id != current for s in self._segments)

    def rewrite(self, replay: Replay) -> list[Path]:
        """Replace every segment by one new segment sealed with the current data key that holds
        the same log (`replay`, from replay()). The new segment is complete before the old
        ones go; if a crash comes between, replaying old + new gives the same log (the batch
        in the new one replaces the same suffix with the same entries)."""
        self._check_usable()
        seq = self._segments[-1].seq + 1 if self._segments else 1
        first = replay.base + 1
        h = replay.hard_state
        hs = None if h is None else (h.term, h.vote, h.commit)
        key_id = self._key_id()
        buf = self._opening(seq, first, hs, key_id)
        ents = replay.entries
        if ents:
            payload = self._packer.pack((None, [(e.term, e.index, e.type, e.data) for e in ents]))
            records.append_record(buf, records.BATCH, self._seal(records.BATCH, seq, key_id, payload))
        path = self._dir / segment_name(seq, first)
        try:
            write_file_atomically(path, buf)
        except OSError as exc:
            self._failed = exc
            raise
        self.close()
        old, self._segments = self._segments, [Segment(seq, first, path, replay.base + len(ents), key_id)]
        for s in old:
            s.path.unlink()
        if old:
            fsync_dir(self._dir)
        self._hard_state = hs
        self._open_for_append(path, holds_records=bool(ents))
        return [s.path for s in old]

    def _list_segments(self) -> list[Segment]:
        segs = []
        for p in self._dir.iterdir():
            m = _SEGMENT_RE.match(p.name)
            if m:
                seq, first = int(m.group(1)), int(m.group(2))
                segs.append(Segment(seq, first, p, first - 1))
        segs.sort(key=lambda s: s.seq)
        return segs

    def _truncate(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    # ---- writing -------------------------------------------------------------------------

    def append(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        """One record, one write(), one fdatasync() for the whole batch (group commit)."""
        self._check_usable()
        hs = None if hard_state is None else (hard_state.term, hard_state.vote, hard_state.commit)
        # Same positional layout as codec.entry_to_tuple, inlined: it runs once per entry.
        payload = self._packer.pack((hs, [(e.term, e.index, e.type, e.data) for e in entries]))
        first = entries[0].index if entries else self.last_index + 1
        self._make_room(self._record_size(payload), first)
        self._write_durably(self._record(records.BATCH, payload))
        if hs is not None:
            self._hard_state = hs
        if entries:
            last = entries[-1].index
            self.last_index = last
            seg = self._segments[-1]
            if last > seg.max_index:
                seg.max_index = last

    def mark_snapshot(self, index: int, term: int) -> None:
        """Record, after the snapshot file is durable, that the log may now resume at index+1."""
        self._check_usable()
        payload = self._packer.pack((index, term))
        # Named for the next index the log holds now, not index+1: the opening record must not
        # claim a gap the marker after it has not yet explained.
        self._make_room(self._record_size(payload), self.last_index + 1)
        self._write_durably(self._record(records.SNAPSHOT, payload))
        self.last_index = max(self.last_index, index)
        seg = self._segments[-1]
        seg.max_index = max(seg.max_index, index)

    def compact(self, index: int) -> list[Path]:
        """Delete the oldest segments whose every index is <= `index`; never the open one.

        Only a prefix goes: a segment after a kept one may still be needed to replay an
        overwrite of the kept one's tail.
        """
        removed = []
        while len(self._segments) > 1 and self._segments[0].max_index <= index:
            seg = self._segments.pop(0)
            seg.path.unlink()
            removed.append(seg.path)
        if removed:
            fsync_dir(self._dir)
        return removed

    def segment_paths(self) -> list[Path]:
        return [s.path for s in self._segments]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _key_id(self) -> int:
        return self._keys.current if self._keys is not None else 0

    def _seal(self, rtype: int, seq: int, key_id: int, payload: bytes) -> bytes:
        if not key_id:
            return payload
        return seal(self._keys.aead(key_id), _AAD.pack(rtype, seq), payload)

    def _record_size(self, payload: bytes) -> int:
        return records.HEADER_SIZE + len(payload) + (_SEAL_OVERHEAD if self._keys is not None else 0)

    def _record(self, rtype: int, payload: bytes) -> bytearray:
        """Frame `payload` for the open segment, sealed with its data key if it has one. The
        checksums cover the sealed bytes, so torn tails and corruption are told apart exactly
        as for plaintext, without the key."""
        seg = self._segments[-1]
        return records.encode_record(rtype, self._seal(rtype, seg.seq, seg.key_id, payload))

    def _opening(self, seq: int, first_index: int, hs: tuple | None, key_id: int) -> bytearray:
        if key_id:
            body = (ENCRYPTED_FORMAT_VERSION, seq, first_index, hs, key_id)
        else:
            body = (FORMAT_VERSION, seq, first_index, hs)
        return records.encode_record(records.SEGMENT, self._packer.pack(body))

    def _make_room(self, nbytes: int, first_index: int) -> None:
        if self._fd is None:
            self._new_segment(first_index)
        elif self._segments[-1].key_id != self._key_id():
            self._new_segment(first_index)  # the data key changed: never mix keys in a segment
        elif self._size + nbytes > self._segment_bytes and self._holds_records:
            self._new_segment(first_index)

    def _new_segment(self, first_index: int) -> None:
        seq = self._segments[-1].seq + 1 if self._segments else 1
        path = self._dir / segment_name(seq, first_index)
        key_id = self._key_id()
        opening = self._opening(seq, first_index, self._hard_state, key_id)
        try:
            write_file_atomically(path, opening)
        except OSError as exc:
            self._failed = exc
            raise
        self.close()  # the previous segment is already durable: every append fsynced it
        self._segments.append(Segment(seq, first_index, path, first_index - 1, key_id))
        self._open_for_append(path, holds_records=False)
        self._log.debug("opened WAL segment %s", path.name)

    def _open_for_append(self, path: Path, holds_records: bool) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._size = os.fstat(self._fd).st_size
        # A segment holding only its opening record is never rotated away: a batch larger than
        # segment_bytes gets a segment of its own instead of an endless chain of empty ones.
        self._holds_records = holds_records

    def _write_durably(self, rec: bytearray) -> None:
        try:
            write_all(self._fd, rec)
            fdatasync(self._fd)
        except OSError as exc:
            self._failed = exc
            raise
        self._size += len(rec)
        self._holds_records = True

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StorageFailedError(
                f"an earlier write to the WAL in {self._dir} failed ({self._failed}); what "
                "reached the disk is unknown, so restart the member to re-read its log"
            ) from self._failed


class _LogError(Exception):
    """A record that decodes but does not fit the log built so far."""


class _LogBuilder:
    """Rebuilds the log from records exactly as the core built it in memory.

    A batch starting at or below the last index replaces the suffix from there (Raft overwriting
    a conflicting tail); a snapshot record lets the log resume after its index and drops entries
    that contradict it. Anything else that does not line up is a missing or misplaced record.
    """

    def __init__(self) -> None:
        self.hard_state: tuple | None = None
        self.base = 0  # entries[k].index == base + 1 + k
        self.entries: list[Entry] = []
        self._started = False

    @property
    def last(self) -> int:
        return self.base + len(self.entries)

    def opening(self, seg: Segment, rtype: int, body) -> None:
        if rtype != records.SEGMENT:
            raise _LogError("segment does not open with a segment record")
        version = body[0] if body else None
        if version == FORMAT_VERSION:
            _, seq, first_index, hs = body
        elif version == ENCRYPTED_FORMAT_VERSION:
            _, seq, first_index, hs, seg.key_id = body
        else:
            raise _LogError(f"unsupported WAL format version {version}")
        if seq != seg.seq or first_index != seg.first_index:
            raise _LogError(
                f"opening record says segment {seq} from index {first_index}, which does not "
                "match the file name"
            )
        if hs is not None:
            self.hard_state = hs
        if not self._started:
            # The first segment left after compaction: what came before is in a snapshot.
            self._started = True
            self.base = first_index - 1
        elif first_index > self.last + 1:
            raise _LogError(
                f"segment starts at index {first_index} but the log before it ends at {self.last}"
            )

    def batch(self, seg: Segment, body) -> None:
        hs, tuples = body
        if hs is not None:
            self.hard_state = hs
        if not tuples:
            return
        first = tuples[0][1]
        ents = self.entries
        if first > self.last + 1:
            raise _LogError(
                f"entry {first} follows entry {self.last}: the records between are missing"
            )
        if first <= self.base:
            ents.clear()
            self.base = first - 1
        else:
            del ents[first - self.base - 1 :]
        types = _ENTRY_TYPES
        ents.extend([Entry(t[0], t[1], types[t[2]], t[3]) for t in tuples])
        if ents[-1].index != self.last:
            raise _LogError("entries in a batch are not contiguous")
        if self.last > seg.max_index:
            seg.max_index = self.last

    def snapshot(self, seg: Segment, body) -> None:
        index, term = body
        if index > self.last or (
            index > self.base and self.entries[index - self.base - 1].term != term
        ):
            # Past our end (a lagging follower was sent the snapshot), or the leader's log
            # differs from ours at the snapshot's index: the core discarded our log; so does replay.
            self.entries.clear()
            self.base = index
        if index > seg.max_index:
            seg.max_index = index
