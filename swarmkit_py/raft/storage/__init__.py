"""Durable Raft state on local disk: a segmented, checksummed WAL plus snapshot files.

See disk.py for the contract with the node driver, records.py for the on-disk record format and
how a torn tail is told apart from corruption.
"""

from .disk import DiskStorage, LoadedState
from .errors import SnapshotCorruptError, StorageFailedError, WALCorruptError

__all__ = [
    "DiskStorage",
    "LoadedState",
    "SnapshotCorruptError",
    "StorageFailedError",
    "WALCorruptError",
]
