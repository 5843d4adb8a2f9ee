"""Framing of WAL records, and the reader's verdict on a damaged one.

One record, little-endian::

    magic    2 bytes   b"\\xfa\\xce"
    type     u8        SEGMENT | BATCH | SNAPSHOT
    length   u32       payload bytes
    crc      u32       zlib.crc32 of the payload
    hcrc     u32       zlib.crc32 of the 11 header bytes above
    payload  msgpack

Why the header has a CRC of its own: a flipped bit in `length` of a record in the middle of a
file would otherwise make it claim to run past end-of-file, which looks exactly like a torn final
write and would be "repaired" by truncating acknowledged records away. With a trusted header, a
record counts as a torn tail only if its header is cut short, or damaged with nothing verifiable
after it, or its trusted length runs past end-of-file, or its payload fails the check and it ends
exactly at end-of-file. Anything else is corruption.

Why a magic: after a damaged header the reader looks for a later verifiable record to tell
"torn tail" (nothing valid follows) from "corruption" (acknowledged records follow, and would be
lost by truncating). `bytes.find` on the magic keeps that search at C speed.

zlib.crc32 rather than crc32c: it ships with Python, is hardware-assisted in recent zlib builds,
and detects the single-bit flips and torn sectors this is for just as well.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from zlib import crc32

MAGIC = b"\xfa\xce"
_PREFIX = struct.Struct("<2sBII")  # magic, type, length, payload crc
_HEADER = struct.Struct("<2sBIII")  # ... plus the header crc
_HCRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size
_PREFIX_SIZE = _PREFIX.size

# Opens every segment: (format version, segment seq, first index, hard state or None). Carrying
# the latest hard state here is what lets compaction delete old segments without losing it.
SEGMENT = 1
# One save(): (hard state or None, [entry tuples]). One record per save makes the whole batch
# atomic by checksum: after a crash either all of it is there or none.
BATCH = 2
# A snapshot became durable: (index, term). Lets the log jump past a gap (a follower that was
# sent a snapshot) and drops a suffix that diverges from the snapshot.
SNAPSHOT = 3

RECORD_TYPES = frozenset((SEGMENT, BATCH, SNAPSHOT))


def append_record(buf: bytearray, rtype: int, payload: bytes) -> None:
    """Frame `payload` onto `buf`, so one save() becomes one contiguous write()."""
    head = _PREFIX.pack(MAGIC, rtype, len(payload), crc32(payload))
    buf += head
    buf += _HCRC.pack(crc32(head))
    buf += payload


def encode_record(rtype: int, payload: bytes) -> bytearray:
    buf = bytearray()
    append_record(buf, rtype, payload)
    return buf


@dataclass(slots=True, frozen=True)
class Damage:
    """Where reading stopped and whether a crash mid-write can explain it."""

    offset: int
    reason: str
    torn: bool  # could be the unacknowledged write in flight at a crash (if at the log's end)


def scan(data: bytes) -> tuple[list[tuple[int, int, memoryview]], Damage | None]:
    """Split a segment's bytes into (offset, type, payload) records, stopping at the first damage.

    Payloads are memoryviews into `data`: replay decodes them in place without copying.
    """
    view = memoryview(data)
    size = len(data)
    out: list[tuple[int, int, memoryview]] = []
    off = 0
    unpack = _HEADER.unpack_from
    while off < size:
        if size - off < HEADER_SIZE:
            return out, Damage(
                off, f"record header cut short ({size - off} of {HEADER_SIZE} bytes)", torn=True
            )
        magic, rtype, length, crc, hcrc = unpack(view, off)
        if magic != MAGIC or crc32(view[off : off + _PREFIX_SIZE]) != hcrc:
            later = _next_valid_record(data, off + 1)
            reason = "record header fails its checksum"
            if later is not None:
                reason += f" and a valid record follows at byte offset {later}"
            return out, Damage(off, reason, torn=later is None)
        end = off + HEADER_SIZE + length
        if end > size:
            return out, Damage(
                off,
                f"record payload cut short ({size - off - HEADER_SIZE} of {length} bytes)",
                torn=True,
            )
        payload = view[off + HEADER_SIZE : end]
        if crc32(payload) != crc:
            tail = "" if end == size else f"; {size - end} more bytes follow it"
            return out, Damage(off, "record payload fails its checksum" + tail, torn=end == size)
        if rtype not in RECORD_TYPES:
            return out, Damage(off, f"unknown record type {rtype}", torn=False)
        out.append((off, rtype, payload))
        off = end
    return out, None


def _next_valid_record(data: bytes, start: int) -> int | None:
    """Offset of the first fully verifiable record at or after `start`, if any."""
    size = len(data)
    view = memoryview(data)
    pos = data.find(MAGIC, start)
    while pos != -1 and size - pos >= HEADER_SIZE:
        _, _, length, crc, hcrc = _HEADER.unpack_from(view, pos)
        end = pos + HEADER_SIZE + length
        if (
            crc32(view[pos : pos + _PREFIX_SIZE]) == hcrc
            and end <= size
            and crc32(view[pos + HEADER_SIZE : end]) == crc
        ):
            return pos
        pos = data.find(MAGIC, pos + 1)
    return None
