"""Snapshot files: one per snapshot, ``snap-<index>.snap``, checksummed, replaced atomically.

Layout: magic ``SKPYSNAP``, u8 format version, u64 payload length, u32 zlib.crc32 of the
payload, then msgpack ``((index, term, (voters, learners)), data)``. The length is checked
against the file size, so a truncated or padded file is caught before its checksum is.

The newest two are kept. The older one is the fallback if the newest turns out corrupt on
restart: DiskStorage only uses it when the WAL still holds every entry between the two (it
compacts no further than the older snapshot to make that the normal case), and moves the corrupt
file aside as ``*.corrupt`` for inspection rather than deleting evidence.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from pathlib import Path
from zlib import crc32

import msgpack

from ..codec import snapmeta_from_tuple, snapmeta_to_tuple
from ..types import Snapshot
from .errors import SnapshotCorruptError
from .fsutil import fsync_dir, write_file_atomically

_MAGIC = b"SKPYSNAP"
_VERSION = 1
_HEADER = struct.Struct("<8sBQI")
_NAME_RE = re.compile(r"^snap-(\d+)\.snap$")
KEEP = 2


def snapshot_name(index: int) -> str:
    return f"snap-{index:016d}.snap"


class SnapshotStore:
    def __init__(self, directory: Path, logger: logging.Logger) -> None:
        self._dir = directory
        self._log = logger

    def list(self) -> list[tuple[int, Path]]:
        """(index, path) of every snapshot file, newest first."""
        found = []
        for p in self._dir.iterdir():
            m = _NAME_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        found.sort(reverse=True)
        return found

    def remove_temp_files(self) -> None:
        for stray in self._dir.glob("snap-*.snap.tmp"):  # a write the crash interrupted
            stray.unlink()

    def write(self, snap: Snapshot) -> Path:
        payload = msgpack.packb((snapmeta_to_tuple(snap.meta), snap.data), use_bin_type=True)
        path = self._dir / snapshot_name(snap.meta.index)
        header = _HEADER.pack(_MAGIC, _VERSION, len(payload), crc32(payload))
        write_file_atomically(path, header + payload)
        return path

    def read(self, path: Path) -> Snapshot:
        data = path.read_bytes()
        if len(data) < _HEADER.size:
            raise SnapshotCorruptError(path, 0, f"snapshot file is only {len(data)} bytes long")
        magic, version, length, crc = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise SnapshotCorruptError(path, 0, "not a snapshot file (bad magic)")
        if version != _VERSION:
            raise SnapshotCorruptError(path, 8, f"unsupported snapshot format version {version}")
        if _HEADER.size + length != len(data):
            raise SnapshotCorruptError(
                path,
                _HEADER.size,
                f"header says {length} payload bytes, file holds {len(data) - _HEADER.size}",
            )
        payload = memoryview(data)[_HEADER.size :]
        if crc32(payload) != crc:
            raise SnapshotCorruptError(path, _HEADER.size, "snapshot payload fails its checksum")
        try:
            meta_t, blob = msgpack.unpackb(payload, raw=False, use_list=True)
            snap = Snapshot(snapmeta_from_tuple(meta_t), bytes(blob))
        except (ValueError, TypeError, IndexError, msgpack.UnpackException) as exc:
            raise SnapshotCorruptError(
                path, _HEADER.size, f"snapshot passes its checksum but does not decode ({exc})"
            ) from exc
        m = _NAME_RE.match(path.name)
        if m and int(m.group(1)) != snap.meta.index:
            raise SnapshotCorruptError(
                path, _HEADER.size, f"file name does not match its index {snap.meta.index}"
            )
        return snap

    def quarantine(self, path: Path) -> None:
        target = path.with_name(path.name + ".corrupt")
        os.replace(path, target)
        fsync_dir(self._dir)
        self._log.warning("moved corrupt snapshot aside to %s", target)

    def retain(self) -> list[Path]:
        """Delete all but the newest KEEP snapshot files."""
        removed = [p for _, p in self.list()[KEEP:]]
        for p in removed:
            p.unlink()
        if removed:
            fsync_dir(self._dir)
        return removed
