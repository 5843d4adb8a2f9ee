"""Why storage refuses to start, in words an operator can act on.

A member whose log is damaged must not guess: an acknowledged entry that silently vanished, or a
corrupt one that was applied, breaks Raft's promise for the whole cluster, not just this node. So
every message names the file and the byte offset and says what to do, and the fix it suggests is
always the safe one: let the member catch up from its peers again.
"""

from __future__ import annotations

import errno
from pathlib import Path

_REMEDY = (
    "This member's Raft state cannot be trusted. Do not edit the file by hand: remove this "
    "member's state directory ({directory}) and re-join it to the cluster so it catches up from "
    "a healthy peer (or restore the directory from a backup taken while the member was stopped). "
    "If this is the last manager, run 'swarmkit-py recover --force-new-cluster' from a backup."
)


class WALCorruptError(Exception):
    """The durable Raft state is damaged somewhere a crash cannot explain."""

    def __init__(self, path: str | Path, offset: int | None, reason: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.reason = reason
        where = f"{self.path}" if offset is None else f"{self.path} at byte offset {offset}"
        directory = self.path if self.path.is_dir() else self.path.parent
        super().__init__(f"{where}: {reason}. " + _REMEDY.format(directory=directory))


class SnapshotCorruptError(WALCorruptError):
    """A snapshot file fails its checksum or does not decode.

    A subclass, not a sibling, so callers that only care "is my state usable" catch one type.
    """


class StorageFailedError(RuntimeError):
    """A write or fsync failed earlier, so what reached the disk is unknown.

    After a failed fsync Linux may already have dropped the dirty pages and report the next
    fsync as a success; carrying on would acknowledge writes that are not on disk. The only
    honest recovery is a restart, which re-reads the log and cuts any torn tail.
    """


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or what caused it, is the disk running out of space (ENOSPC, EDQUOT): a
    condition that freeing space cures, unlike a failing disk."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
