"""Durable Raft state on local disk: a segmented, checksummed WAL plus snapshot files.

See disk.py for the contract with the node driver, records.py for the on-disk record format and
how a torn tail is told apart from corruption, crypto.py for encryption at rest and autolock.
"""

from .crypto import (
    INVALID_UNLOCK_KEY_MESSAGE,
    SWARM_LOCKED_MESSAGE,
    InvalidUnlockKeyError,
    Keyring,
    KeyringError,
    SwarmLockedError,
    format_unlock_key,
    new_key,
    parse_unlock_key,
)
from .disk import DiskStorage, LoadedState
from .errors import SnapshotCorruptError, StorageFailedError, WALCorruptError, disk_full

__all__ = [
    "INVALID_UNLOCK_KEY_MESSAGE",
    "SWARM_LOCKED_MESSAGE",
    "DiskStorage",
    "InvalidUnlockKeyError",
    "Keyring",
    "KeyringError",
    "LoadedState",
    "SwarmLockedError",
    "format_unlock_key",
    "new_key",
    "parse_unlock_key",
    "SnapshotCorruptError",
    "StorageFailedError",
    "WALCorruptError",
    "disk_full",
]
