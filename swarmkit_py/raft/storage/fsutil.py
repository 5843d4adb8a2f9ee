"""The few filesystem moves that durability rests on, in one place so each is done right once."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# fdatasync skips flushing timestamps but still flushes the file size, which is all a log
# append needs; macOS has no fdatasync.
fdatasync = getattr(os, "fdatasync", os.fsync)


def fsync_dir(directory: Path) -> None:
    """Make a create, rename or unlink in `directory` durable: the entry lives in the directory."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write may write less than asked (signals, quotas); a short write must not pass as done."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_file_atomically(path: Path, data: bytes | bytearray | memoryview) -> None:
    """Either the old file or the complete new one survives a crash, never a half-written one.

    Data is fsynced before the rename (else the rename may reach the disk before the data) and
    the directory after it (else the rename itself may be lost).
    A failed write removes its temporary file: on a full disk it would hold the very space
    that is missing.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.replace(tmp, path)
    fsync_dir(path.parent)
