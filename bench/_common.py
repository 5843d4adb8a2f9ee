"""Shared plumbing for the bench scripts: a PySyncObj cluster of helper processes, result output.

Why here and not in the package: this code exists only to drive the comparison; PySyncObj is a
bench-only dependency and must never be imported by `swarmkit_py`.

Every process is started here and only those are signalled, by PID (SIGKILL for a crash, SIGTERM
/ SIGKILL on cleanup); every member binds 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"
HELPER = Path(__file__).with_name("_pysyncobj_node.py")


def free_ports(n: int) -> list[int]:
    """Ports the kernel hands out right now on loopback (bound together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def emit(result: dict, out: str | None) -> None:
    """Print the one JSON line; with --out also append it (plus date/host) to a JSONL file."""
    line = json.dumps(result, sort_keys=False)
    print(line, flush=True)
    if out:
        rec = dict(result)
        rec.setdefault("date", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        rec.setdefault("host_cpus", os.cpu_count())
        rec.setdefault("python", platform.python_version())
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")


def git_commit() -> str | None:
    """The commit measured, so figures can be tied to a version of a moving code base. The tree is
    shared with engineers editing the package, so "+dirty" marks uncommitted changes under
    swarmkit_py/ (the code actually run is then the working tree, not the commit)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                              capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "swarmkit_py"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def source_id() -> dict:
    """Where the swarmkit_py that member processes import lives, and a hash of its .py files.

    Why: with a shared, moving working tree a commit hash does not say what ran. run_all.sh can
    copy the tree to a snapshot (PYTHONPATH) so edits made during a run do not change the code
    under test halfway; this records which copy ran and its content hash.
    """
    spec = importlib.util.find_spec("swarmkit_py")
    if spec is None or not spec.submodule_search_locations:
        return {}
    pkg = Path(list(spec.submodule_search_locations)[0])
    h = hashlib.sha1()
    for f in sorted(pkg.rglob("*.py")):
        h.update(str(f.relative_to(pkg)).encode())
        h.update(f.read_bytes())
    out = {"src_path": str(pkg), "src_sha1": h.hexdigest()[:12]}
    marker = pkg.parent / "COMMIT"  # run_all.sh snapshots: `git archive <commit>` + this file
    if marker.exists():
        out["src_commit"] = marker.read_text().strip()
    return out


class _Proc:
    """One helper process: a JSON line in, a JSON line out. A reader thread feeds a queue so a
    reply can be awaited with a timeout (a hung member must not hang the bench)."""

    def __init__(self, idx: int, addr: str, partners: list[str], workdir: Path, journal: bool, no_batch: bool):
        self.idx = idx
        self.addr = addr
        cmd = [sys.executable, str(HELPER), "--self", addr, "--partners", ",".join(partners)]
        if journal:
            cmd += ["--journal-dir", str(workdir / f"n{idx}")]
        if no_batch:
            cmd += ["--no-batch"]
        self.log_path = workdir / f"n{idx}.log"
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf,
                                         text=True, bufsize=1)
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.replies.put(json.loads(line))
        self.replies.put(None)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, cmd: dict, timeout: float = 5.0) -> dict:
        if not self.alive:
            raise RuntimeError(f"pysyncobj member {self.idx} is not running; see {self.log_path}")
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        try:
            reply = self.replies.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"pysyncobj member {self.idx}: no reply to {cmd['cmd']} in {timeout}s") from None
        if reply is None:
            raise RuntimeError(f"pysyncobj member {self.idx} exited; see {self.log_path}")
        return reply


class PySyncObjCluster:
    """n PySyncObj members, each its own OS process on 127.0.0.1, library defaults."""

    def __init__(self, n: int, workdir: str | Path, *, journal: bool = False, no_batch: bool = False):
        self.n = n
        self.workdir = Path(workdir)
        self.journal = journal
        self.no_batch = no_batch
        self.members: dict[int, _Proc] = {}

    def start(self) -> None:
        addrs = [f"{HOST}:{p}" for p in free_ports(self.n)]
        for i, addr in enumerate(addrs, start=1):
            others = [a for a in addrs if a != addr]
            self.members[i] = _Proc(i, addr, others, self.workdir, self.journal, self.no_batch)

    def status(self, i: int) -> dict:
        return self.members[i].ask({"cmd": "status"})

    def wait_leader(self, timeout: float = 30.0, exclude: frozenset[int] = frozenset(),
                    all_connected: bool = True) -> int:
        """The member that leads with quorum and that every live member names as leader; with
        `all_connected`, also wait until it is connected to every live partner, so a load run
        does not start while followers are still dialing."""
        deadline = time.monotonic() + timeout
        while True:
            live = {i: m for i, m in self.members.items() if m.alive and i not in exclude}
            sts = {i: self.status(i) for i in live}
            leaders = [i for i, s in sts.items() if s["is_leader"] and s["has_quorum"]]
            if len(leaders) == 1:
                lid = leaders[0]
                addr = live[lid].addr
                agreed = all(s["leader"] == addr for s in sts.values())
                want = len(live) - 1 if all_connected else 0
                if agreed and sts[lid]["connected"] >= want:
                    return lid
            if time.monotonic() > deadline:
                raise TimeoutError(f"pysyncobj: no agreed leader within {timeout}s: {sts}")
            time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL, by the PID of the process started here: a crash."""
        m = self.members[i]
        if m.alive:
            os.kill(m.proc.pid, signal.SIGKILL)
            m.proc.wait()

    def stop(self) -> None:
        for m in self.members.values():
            if m.alive:
                try:
                    m.proc.stdin.write('{"cmd": "quit"}\n')
                    m.proc.stdin.flush()
                except OSError:
                    pass
        deadline = time.monotonic() + 3
        for m in self.members.values():
            try:
                m.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(m.proc.pid, signal.SIGKILL)
                m.proc.wait()
            for f in (m.proc.stdin, m.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
