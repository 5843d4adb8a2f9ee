"""Running many seeds of the simulation over every CPU, in this process or in the background.

`run(seeds)` returns one `(seed, nodes, failure message or None, stats or None)` per seed.
`python -m tests.sim.seeds --start S --count N --out FILE --idle` does the same in a process of
its own at the scheduler's idle priority (SCHED_IDLE: it gets a CPU only when nothing else
wants it) and writes the results as JSON. The suite starts that as soon as it has collected the
seeded test (tests/conftest.py), so the seeds' 400-500 CPU seconds fill the time the cluster and
lab tests spend waiting, instead of adding four minutes at the end; the test then only collects
them (test_random_schedules.py).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tests.sim.harness import SimFailure, run_seed

ROOT = Path(__file__).resolve().parents[2]
Result = tuple[int, int, "str | None", "dict | None"]


def one(seed: int) -> Result:
    try:
        stats = run_seed(seed)
    except SimFailure as e:
        return seed, (3, 5, 7)[seed % 3], str(e), None
    return seed, stats["nodes"], None, stats


def die_with_parent() -> None:
    """Be killed when the parent process dies (Linux's PR_SET_PDEATHSIG): seeds left running by
    a suite that was itself killed would go on using the machine for minutes."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def run(seeds: range) -> list[Result]:
    workers = max(1, min(os.cpu_count() or 1, len(seeds)))
    if workers == 1:
        return [one(s) for s in seeds]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=die_with_parent) as pool:
        return list(pool.map(one, seeds, chunksize=8))


class Background:
    """`count` seeds from `start` running in a process of their own, at idle priority."""

    def __init__(self, start: int, count: int) -> None:
        self.start, self.count = start, count
        self.started = time.monotonic()
        self.out = Path(tempfile.mkstemp(prefix="sim-seeds-", suffix=".json")[1])
        self.log = self.out.with_suffix(".log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.sim.seeds", "--start", str(start), "--count", str(count),
                 "--out", str(self.out), "--idle"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def results(self, timeout: float) -> list[Result]:
        """Wait for the seeds (raises TimeoutError, or RuntimeError if the runner failed)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"the seeds were not done within {timeout:.0f}s") from None
        if code != 0:
            raise RuntimeError(f"the seed runner exited with {code}:\n{self.log.read_text()[-4000:]}")
        return [tuple(r) for r in json.loads(self.out.read_text())]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # our own child, by its handle
            self.proc.wait()
        for f in (self.out, self.log):
            f.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--idle", action="store_true", help="run at SCHED_IDLE priority (the workers too)")
    args = ap.parse_args()
    die_with_parent()
    if args.idle:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:  # a sandbox that refuses the policy: the lowest nice level instead
            os.nice(19)
    results = run(range(args.start, args.start + args.count))
    Path(args.out).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
