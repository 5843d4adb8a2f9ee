"""One PySyncObj member as its own OS process, driven over stdin/stdout by the bench scripts.

Why a helper process: the comparison must give each Raft member its own interpreter (its own GIL)
as ours has, and PySyncObj has no client protocol, so the load has to run *inside* the leader's
process, as it was run for ``../shared/notes/pysyncobj.md``. The parent sends one JSON command
per line on stdin and reads exactly one JSON reply line per command on stdout:

- ``{"cmd": "status"}`` -> state, leader, term, quorum and connected partners.
- ``{"cmd": "load", "inflight": W, "seconds": S, "size": B, "warmup": 1.0}`` -> a load thread
  keeps W ``ReplDict.set`` calls in flight (callbacks), 1,000 keys round robin, random values;
  replies ``{"writes", "seconds", "errors", "p50_ms", "p99_ms"}``: writes completed inside the
  window that follows the warm-up, and the latency of those writes.
- ``{"cmd": "writer"}`` -> starts a thread issuing one write every 5 ms (failover bench).
- ``{"cmd": "first_ok_after", "t": T, "timeout": X}`` -> waits for the first successful write
  issued at ``time.monotonic() >= T`` (CLOCK_MONOTONIC is system-wide on Linux, so the parent's
  kill timestamp is comparable) and replies its completion time.
- ``{"cmd": "quit"}``.

The SyncObj uses library defaults; ``--journal-dir`` puts its journal and full-dump files on
disk (PySyncObj never fsyncs them), ``--no-batch`` sets ``appendEntriesUseBatch=False``.
Logging goes to stderr, which the parent points at a file, so stdout carries only replies.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import threading
import time

from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.batteries import ReplDict

KEYS = 1000
# A pool of distinct random values, longer than zlib's 32 KiB window even at 10 B per value:
# PySyncObj zlib-compresses every message, so repeated values would flatter it.
POOL = 16_411
_LEADER_STATE = 2  # pysyncobj _RAFT_STATE.LEADER


def _percentile(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


class Member:
    def __init__(self, self_addr: str, partners: list[str], journal_dir: str | None, no_batch: bool):
        kw: dict = {}
        if journal_dir:
            os.makedirs(journal_dir, exist_ok=True)
            kw["journalFile"] = os.path.join(journal_dir, "journal")
            kw["fullDumpFile"] = os.path.join(journal_dir, "dump")
        if no_batch:
            kw["appendEntriesUseBatch"] = False
        self.d = ReplDict()
        self.obj = SyncObj(self_addr, partners, conf=SyncObjConf(**kw), consumers=[self.d])
        self.ok_times: list[tuple[float, float]] = []  # (issued, completed) of successful writes
        self._ok_lock = threading.Lock()
        self._ok_cond = threading.Condition(self._ok_lock)
        self._writer: threading.Thread | None = None

    def status(self) -> dict:
        st = self.obj.getStatus()
        partners = {k[len("partner_node_status_server_"):]: v == 2 for k, v in st.items()
                    if k.startswith("partner_node_status_server_")}
        leader = st["leader"]
        return {
            "pid": os.getpid(),
            "self": str(st["self"]),
            "leader": None if leader is None else str(leader),
            "is_leader": st["state"] == _LEADER_STATE,
            "term": st["raft_term"],
            "has_quorum": st["has_quorum"],
            "connected": sum(partners.values()),
            "partners": len(partners),
            "commit_idx": st["commit_idx"],
        }

    def load(self, inflight: int, seconds: float, size: int, warmup: float) -> dict:
        """W writes in flight: a semaphore slot per write, released by its callback (which runs on
        PySyncObj's own tick thread), so the window stays full without busy waiting."""
        rnd = random.Random(1)
        values = [rnd.randbytes(size) for _ in range(POOL)]
        slots = threading.Semaphore(inflight)
        lock = threading.Lock()
        lat: list[float] = []
        state = {"done": 0, "errors": 0}
        t_start = time.monotonic()
        t_measure, t_end = t_start + warmup, t_start + warmup + seconds

        def make_cb(t0: float):
            def cb(result, err):
                t1 = time.monotonic()
                with lock:
                    if err != 0:  # FAIL_REASON.SUCCESS == 0
                        state["errors"] += 1
                    elif t_measure <= t1 <= t_end:  # completions inside the window
                        state["done"] += 1
                        if len(lat) < 200_000:
                            lat.append((t1 - t0) * 1000)
                slots.release()
            return cb

        i = 0
        while True:
            slots.acquire()
            t0 = time.monotonic()
            if t0 >= t_end:
                slots.release()
                break
            self.d.set(f"k{i % KEYS}", values[i % POOL], callback=make_cb(t0))
            i += 1
        # Let the window drain so the next run starts clean (results are already counted).
        deadline = time.monotonic() + 10
        got = 0
        while got < inflight and time.monotonic() < deadline:
            if slots.acquire(timeout=0.1):
                got += 1
        lat.sort()
        return {"writes": state["done"], "seconds": seconds, "errors": state["errors"],
                "p50_ms": _percentile(lat, 0.5), "p99_ms": _percentile(lat, 0.99)}

    def start_writer(self, period: float = 0.005) -> None:
        """One write every `period`, each with its own callback; successes are recorded with the
        time they were issued, so the parent can ask about writes issued after its kill."""
        def cb_for(t0: float):
            def cb(result, err):
                if err == 0:
                    with self._ok_cond:
                        self.ok_times.append((t0, time.monotonic()))
                        self._ok_cond.notify_all()
            return cb

        def run() -> None:
            i = 0
            nxt = time.monotonic()
            while True:
                t0 = time.monotonic()
                self.d.set(f"f{i % KEYS}", b"x" * 10, callback=cb_for(t0))
                i += 1
                nxt += period
                time.sleep(max(0.0, nxt - time.monotonic()))

        if self._writer is None:
            self._writer = threading.Thread(target=run, daemon=True)
            self._writer.start()

    def first_ok_after(self, t: float, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self._ok_cond:
            while True:
                oks = [done for issued, done in self.ok_times if issued >= t]
                if oks:
                    return {"ok_t": min(oks)}
                left = deadline - time.monotonic()
                if left <= 0:
                    return {"ok_t": None}
                self._ok_cond.wait(left)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--self", dest="self_addr", required=True)
    ap.add_argument("--partners", required=True, help="comma-separated host:port of the others")
    ap.add_argument("--journal-dir")
    ap.add_argument("--no-batch", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    m = Member(args.self_addr, [p for p in args.partners.split(",") if p], args.journal_dir, args.no_batch)
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        c = cmd["cmd"]
        if c == "status":
            reply = m.status()
        elif c == "load":
            reply = m.load(cmd["inflight"], cmd["seconds"], cmd["size"], cmd.get("warmup", 1.0))
        elif c == "writer":
            m.start_writer()
            reply = {"ok": True}
        elif c == "first_ok_after":
            reply = m.first_ok_after(cmd["t"], cmd.get("timeout", 15.0))
        elif c == "quit":
            break
        else:
            reply = {"error": f"unknown command {c!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    m.obj.destroy()
    sys.stdout.flush()
    os._exit(0)  # PySyncObj's tick thread is not a daemon; nothing left to flush (no fsync anyway)


if __name__ == "__main__":
    main()
