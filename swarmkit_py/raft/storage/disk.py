"""DiskStorage: the Raft member's durable state (log, hard state, snapshots) in one directory.

Where the hard state lives: in the WAL, as an optional part of each batch record (the last one
wins) and repeated in the opening record of every segment. A separate atomically replaced file
would cost a second write, fsync, rename and directory fsync in every save() that changes the
term, vote or commit; in the WAL the entries and the hard state of one Ready share a single
write() and a single fdatasync(), and both become durable together or not at all. Repeating it at
the top of each segment is what lets compaction delete old segments without losing it.

The contract with the driver: calls come one at a time (from its worker thread), and a call that
returns has made everything it was given durable. A call that raises OSError poisons the
instance (see StorageFailedError); restart and load() again.

Encryption at rest (`encrypted=True`, what a manager uses; see crypto.py): the same files, with
every WAL record after a segment's opening record and every snapshot payload sealed by the
current data key. Framing and checksums are unchanged and cover the sealed bytes, so a torn
tail and corruption are told apart exactly as before. Files that are not sealed with the current
key (a plaintext directory from before encryption, or a rotation that a crash interrupted) are
re-encrypted by load(); a pending rotation is carried out by the next save_snapshot(), which
writes the snapshot with the new key and re-encrypts everything else, after which the old key is
erased. Only `set_kek` and `rotate_data_key` may be called from another thread than the driver's:
they touch the keyring alone.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..types import Entry, HardState, Snapshot
from .crypto import Keyring
from .errors import SnapshotCorruptError, WALCorruptError
from .fsutil import fsync_dir
from .snapshots import SnapshotStore
from .wal import WAL, Replay

_LOCK_NAME = "LOCK"


@dataclass(slots=True)
class LoadedState:
    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)  # contiguous, all after the snapshot


class DiskStorage:
    def __init__(
        self,
        directory: str | Path,
        segment_bytes: int = 64 * 1024 * 1024,
        logger: logging.Logger | None = None,
        *,
        encrypted: bool = False,
        unlock_key: bytes | None = None,
    ) -> None:
        """`encrypted`: seal the state (creating a keyring with a local KEK if the directory has
        none); `unlock_key` opens a keyring sealed by autolock (SwarmLockedError without it,
        InvalidUnlockKeyError with a wrong one)."""
        self._dir = Path(directory)
        self._log = logger or logging.getLogger(__name__)
        if not self._dir.is_dir():
            self._dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(self._dir.parent)
        # Two processes appending to one log would interleave records and corrupt it for good;
        # an advisory lock turns that operator mistake into an immediate, clear error.
        self._lock_fd: int | None = os.open(
            self._dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise RuntimeError(
                f"{self._dir} is in use by another process (is another agent running?)"
            ) from None
        try:
            self._keys = Keyring.open(self._dir, unlock_key) if encrypted else None
        except BaseException:
            self.close()
            raise
        self._wal = WAL(self._dir, segment_bytes, self._log, self._keys)
        self._snaps = SnapshotStore(self._dir, self._log, self._keys)
        self._snap_index = 0
        self._loaded = False

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def keyring(self) -> Keyring | None:
        return self._keys

    @property
    def wants_snapshot(self) -> bool:
        """A data-key rotation is pending: the driver should snapshot soon (it re-encrypts)."""
        return self._keys is not None and self._keys.pending is not None

    def set_kek(self, unlock_key: bytes | None, at_index: int = 0) -> bool:
        """Wrap the data keys by the autolock unlock key, or (None) by a local key file, as the
        cluster object at Raft index `at_index` says (Keyring.set_kek)."""
        self._require_keys()
        return self._keys.set_kek(unlock_key, at_index)

    def rotate_data_key(self) -> None:
        """Ask for a new data key; the next save_snapshot() switches every file to it."""
        self._require_keys()
        self._keys.rotate()

    def _require_keys(self) -> None:
        if self._keys is None:
            raise RuntimeError(f"storage for {self._dir} was opened without encryption")

    def load(self) -> LoadedState:
        """Recover the state a restart resumes from; also readies the log for appending."""
        self._check_open()
        self._snaps.remove_temp_files()
        replay = self._wal.replay()
        if self._keys is not None:
            self._reencrypt(replay)

        snapshot: Snapshot | None = None
        corrupt: list[SnapshotCorruptError] = []
        for _, path in self._snaps.list():
            try:
                snapshot = self._snaps.read(path)
                break
            except SnapshotCorruptError as exc:
                corrupt.append(exc)
                self._log.warning("%s; trying an older snapshot", exc)
        if corrupt and snapshot is None:
            raise corrupt[0]
        try:
            entries, needs_marker = self._fit(replay, snapshot)
        except WALCorruptError as gap:
            if corrupt:
                first = corrupt[0]
                raise SnapshotCorruptError(
                    first.path,
                    first.offset,
                    f"{first.reason}, and the older snapshot cannot stand in for it because "
                    f"the log no longer reaches back to it ({gap.reason})",
                ) from gap
            raise
        for exc in corrupt:
            self._snaps.quarantine(exc.path)

        self._snap_index = snapshot.meta.index if snapshot else 0
        self._wal.last_index = entries[-1].index if entries else self._snap_index
        if needs_marker:
            # The snapshot became durable but the crash came before the log learned of it; the
            # next append would look like a gap (or keep a divergent suffix) without this.
            self._wal.mark_snapshot(snapshot.meta.index, snapshot.meta.term)
        self._loaded = True
        return LoadedState(replay.hard_state or HardState(), snapshot, entries)

    def _fit(self, replay: Replay, snapshot: Snapshot | None) -> tuple[list[Entry], bool]:
        """Entries after the snapshot, checking the log and the snapshot meet without a gap."""
        base, ents = replay.base, replay.entries
        snap_index = snapshot.meta.index if snapshot else 0
        if base > snap_index:
            covered = f"snapshot {snap_index}" if snapshot else "no snapshot"
            raise WALCorruptError(
                self._dir,
                None,
                f"the log resumes after index {base} but {covered} covers the entries before "
                f"it: entries {snap_index + 1}..{base} are missing",
            )
        if snapshot is None:
            return ents, False
        k = snap_index - base  # how many of ents the snapshot covers
        if k > len(ents):
            return [], True
        if k > 0 and ents[k - 1].term != snapshot.meta.term:
            return [], True
        return ents[k:], False

    def save(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        """Append `entries` (replacing any stored suffix from their first index on) and record
        `hard_state`; returns once both are durable, with one write() and one fdatasync()."""
        self._ensure_loaded()
        if entries:
            first = entries[0].index
            if entries[-1].index - first + 1 != len(entries):
                raise ValueError(
                    f"entries {first}..{entries[-1].index} are not contiguous ({len(entries)} given)"
                )
            if first <= self._snap_index:
                raise ValueError(
                    f"entry {first} is covered by snapshot {self._snap_index} and is committed"
                )
            if first > self._wal.last_index + 1:
                raise ValueError(f"entry {first} would leave a gap after {self._wal.last_index}")
        elif hard_state is None:
            return
        self._wal.append(hard_state, entries)

    def save_snapshot(self, snap: Snapshot) -> None:
        """Make `snap` durable; afterwards the log resumes at snap.meta.index + 1.

        Order matters for crashes: the file first (temp, fsync, rename, fsync dir), then the
        marker in the log, then old files go. A crash between the first two is repaired by load().
        """
        self._ensure_loaded()
        index = snap.meta.index
        if index < self._snap_index:
            raise ValueError(
                f"snapshot {index} is older than the stored snapshot {self._snap_index}"
            )
        rotating = self._keys is not None and self._keys.promote_pending()
        self._snaps.write(snap)
        if rotating:
            self._reencrypt(self._wal.replay())
        self._wal.mark_snapshot(index, snap.meta.term)
        self._snap_index = index
        for path in self._snaps.retain():
            self._log.debug("removed old snapshot %s", path.name)

    def compact(self, index: int) -> None:
        """Drop whole segments whose entries are all <= index.

        Goes no further than the older kept snapshot, so that if the newest snapshot file is
        found corrupt on restart the older one plus the log still rebuild the state.
        """
        self._ensure_loaded()
        kept = self._snaps.list()
        if not kept:
            return
        limit = min(index, kept[-1][0])
        for path in self._wal.compact(limit):
            self._log.debug("compacted WAL segment %s", path.name)

    def _reencrypt(self, replay: Replay) -> None:
        """Seal every file with the current data key, then erase retired keys. Idempotent, and
        safe to interrupt: until the last file is rewritten the old keys stay in deks.json."""
        current = self._keys.current
        stale = [p for _, p in self._snaps.list() if self._snaps.key_id(p) != current]
        for path in stale:
            try:
                self._snaps.write(self._snaps.read(path))
            except SnapshotCorruptError:
                continue  # load() decides what a corrupt snapshot means; keep its key for it
            self._log.info("re-encrypted snapshot %s with data key %d", path.name, current)
        if self._wal.needs_reencryption():
            n = len(self._wal.segment_paths())
            self._wal.rewrite(replay)
            self._log.info("re-encrypted the WAL (%d segments) with data key %d", n, current)
        if all(self._snaps.key_id(p) == current for _, p in self._snaps.list()):
            self._keys.drop_retired()

    def close(self) -> None:
        if not hasattr(self, "_wal"):
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            return
        self._wal.close()
        self._loaded = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _ensure_loaded(self) -> None:
        self._check_open()
        if not self._loaded:
            self.load()

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError(f"storage for {self._dir} is closed")
