"""Snapshot files: one per snapshot, ``snap-<index>.snap``, checksummed, replaced atomically.

Layout: magic ``SKPYSNAP``, u8 format version, u64 payload length, u32 zlib.crc32 of the
payload, then msgpack ``((index, term, (voters, learners)), data)``. The length is checked
against the file size, so a truncated or padded file is caught before its checksum is.
Format 2 (encrypted) adds a u32 data key id after the checksum, and the payload is that msgpack
sealed with the key (nonce + AES-GCM); the checksum covers the sealed bytes, so damage is
reported the same way with or without the key.

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
from cryptography.exceptions import InvalidTag

from ..codec import snapmeta_from_tuple, snapmeta_to_tuple
from ..types import Snapshot
from .crypto import Keyring, seal, unseal
from .errors import SnapshotCorruptError
from .fsutil import fsync_dir, write_file_atomically

_MAGIC = b"SKPYSNAP"
_VERSION = 1
_ENCRYPTED_VERSION = 2
_HEADER = struct.Struct("<8sBQI")
_KEY_ID = struct.Struct("<I")
_AAD = b"swarmkit-py snapshot"
_NAME_RE = re.compile(r"^snap-(\d+)\.snap$")
KEEP = 2


def snapshot_name(index: int) -> str:
    return f"snap-{index:016d}.snap"


class SnapshotStore:
    def __init__(self, directory: Path, logger: logging.Logger, keyring: Keyring | None = None) -> None:
        self._dir = directory
        self._log = logger
        self._keys = keyring

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
        if self._keys is None:
            header = _HEADER.pack(_MAGIC, _VERSION, len(payload), crc32(payload))
        else:
            key_id = self._keys.current
            payload = seal(self._keys.aead(key_id), _AAD, payload)
            header = _HEADER.pack(_MAGIC, _ENCRYPTED_VERSION, len(payload), crc32(payload))
            header += _KEY_ID.pack(key_id)
        write_file_atomically(path, header + payload)
        return path

    def key_id(self, path: Path) -> int:
        """The data key a snapshot file is sealed with (0: plaintext), from its header alone."""
        with open(path, "rb") as f:
            head = f.read(_HEADER.size + _KEY_ID.size)
        if len(head) == _HEADER.size + _KEY_ID.size and head[8] == _ENCRYPTED_VERSION:
            return _KEY_ID.unpack_from(head, _HEADER.size)[0]
        return 0

    def read(self, path: Path) -> Snapshot:
        data = path.read_bytes()
        if len(data) < _HEADER.size:
            raise SnapshotCorruptError(path, 0, f"snapshot file is only {len(data)} bytes long")
        magic, version, length, crc = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise SnapshotCorruptError(path, 0, "not a snapshot file (bad magic)")
        if version not in (_VERSION, _ENCRYPTED_VERSION):
            raise SnapshotCorruptError(path, 8, f"unsupported snapshot format version {version}")
        start = _HEADER.size + (_KEY_ID.size if version == _ENCRYPTED_VERSION else 0)
        if start + length != len(data):
            raise SnapshotCorruptError(
                path,
                start,
                f"header says {length} payload bytes, file holds {len(data) - start}",
            )
        payload = memoryview(data)[start:]
        if crc32(payload) != crc:
            raise SnapshotCorruptError(path, start, "snapshot payload fails its checksum")
        if version == _ENCRYPTED_VERSION:
            payload = self._unseal(path, _KEY_ID.unpack_from(data, _HEADER.size)[0], payload)
        try:
            meta_t, blob = msgpack.unpackb(payload, raw=False, use_list=True)
            snap = Snapshot(snapmeta_from_tuple(meta_t), bytes(blob))
        except (ValueError, TypeError, IndexError, msgpack.UnpackException) as exc:
            raise SnapshotCorruptError(
                path, start, f"snapshot passes its checksum but does not decode ({exc})"
            ) from exc
        m = _NAME_RE.match(path.name)
        if m and int(m.group(1)) != snap.meta.index:
            raise SnapshotCorruptError(
                path, start, f"file name does not match its index {snap.meta.index}"
            )
        return snap

    def _unseal(self, path: Path, key_id: int, payload) -> bytes:
        aead = self._keys.aead(key_id) if self._keys is not None else None
        if aead is None:
            why = (
                "storage was opened without encryption"
                if self._keys is None
                else f"deks.json does not hold data key {key_id}"
            )
            raise SnapshotCorruptError(path, 0, f"snapshot is encrypted with data key {key_id} but {why}")
        try:
            return unseal(aead, _AAD, payload)
        except InvalidTag:
            raise SnapshotCorruptError(
                path,
                _HEADER.size,
                f"snapshot passes its checksum but fails authentication with data key {key_id}",
            ) from None

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
