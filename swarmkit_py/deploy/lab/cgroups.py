"""One cgroup v2 directory per lab host: the unit of a power cut.

`cgroup.kill` kills every process of the host in one kernel operation (sshd, dockerd,
containerd, shims, containers, the agent), which is what a power loss looks like to the
peers. Docker's --cgroup-parent is given the same relative path, so on a hybrid machine the
containers runc places in the unified hierarchy land *under* the host's cgroup too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class CgroupError(RuntimeError):
    pass


def _mounts() -> list[tuple[str, str]]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] in ("cgroup", "cgroup2"):
            out.append((parts[1].replace("\\040", " "), parts[2]))
    return out


def v2_root() -> Path:
    """Where cgroup2 is mounted: /sys/fs/cgroup on pure v2, /sys/fs/cgroup/unified on hybrid."""
    for mnt, kind in _mounts():
        if kind == "cgroup2":
            return Path(mnt)
    raise CgroupError("no cgroup2 hierarchy is mounted; the lab needs cgroup v2 (cgroup.kill)")


def all_hierarchies() -> list[Path]:
    return [Path(m) for m, _ in _mounts()]


def ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _event(path: Path, key: str) -> str | None:
    try:
        for line in (path / "cgroup.events").read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return v.strip()
    except FileNotFoundError:
        return None
    return None


def populated(path: Path) -> bool:
    """Never stat the size: cgroupfs files report 0 bytes."""
    return _event(path, "populated") == "1"


def procs(path: Path) -> list[int]:
    """PIDs of the cgroup and all its descendants."""
    pids: list[int] = []
    if not path.is_dir():
        return pids
    for d, _subdirs, _files in os.walk(path):
        try:
            pids += [int(x) for x in Path(d, "cgroup.procs").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return pids


def kill(path: Path, timeout: float = 10.0) -> float:
    """SIGKILL everything in the subtree and wait until it is empty; returns seconds taken."""
    if not path.is_dir():
        return 0.0
    t0 = time.monotonic()
    (path / "cgroup.kill").write_text("1")
    deadline = t0 + timeout
    while populated(path):
        if time.monotonic() > deadline:
            raise CgroupError(f"{path}: still populated {timeout}s after cgroup.kill: pids {procs(path)}")
        time.sleep(0.005)
    return time.monotonic() - t0


def frozen(path: Path) -> bool:
    """Every process of the subtree is stopped by the freezer (cgroup.events `frozen 1`)."""
    return _event(path, "frozen") == "1"


def set_frozen(path: Path, on: bool, timeout: float = 10.0) -> float:
    """Freeze (SIGSTOP-like, invisible to the processes) or thaw the whole subtree and wait
    until the kernel reports it done; returns seconds taken. A frozen cgroup can still be
    killed: cgroup.kill works on frozen tasks."""
    if not path.is_dir():
        raise CgroupError(f"{path}: no such cgroup")
    t0 = time.monotonic()
    (path / "cgroup.freeze").write_text("1" if on else "0")
    deadline = t0 + timeout
    while frozen(path) != on:
        if time.monotonic() > deadline:
            raise CgroupError(f"{path}: not {'frozen' if on else 'thawed'} {timeout}s after cgroup.freeze")
        time.sleep(0.005)
    return time.monotonic() - t0


def remove_tree(path: Path) -> None:
    """rmdir bottom-up; cgroup directories can only be removed empty of children and processes."""
    if not path.is_dir():
        return
    for d, subdirs, _files in os.walk(path, topdown=False):
        for s in subdirs:
            try:
                os.rmdir(os.path.join(d, s))
            except FileNotFoundError:
                pass
    os.rmdir(path)


def remove_everywhere(rel: str) -> list[Path]:
    """Remove `rel` from every mounted hierarchy: v1 controllers get leftovers from dockerd's
    --cgroup-parent after a crash (nobody was alive to clean them). Returns what remains."""
    left = []
    for root in all_hierarchies():
        p = root / rel
        try:
            remove_tree(p)
        except OSError:
            left.append(p)
    return left
