"""Cost of encryption at rest: committed Raft writes/s with the WAL and snapshots sealed
(AES-256-GCM data key, swarmkit_py/raft/storage/crypto.py) vs in clear, same cluster shape.

    python bench/encryption_bench.py [--nodes 3] [--trials 5] [--seconds 5] [--value-size 1024]
        [--inflight 1000] [--client inprocess|connection] [--out bench/results.jsonl]
    python bench/encryption_bench.py --storage [--trials 5] [--batch 64] [--value-size 1024]

Runs bench/raft_bench.py (real member processes on 127.0.0.1, fsync on every acknowledged
batch) alternately without and with --encrypt, `--trials` times each, interleaved so that
background load on a shared machine hits both modes alike. Prints ONE JSON line: per mode the
median writes/s and the median CPU time of all member processes per write (the steadier figure
on a loaded machine), the on-vs-off change of each in percent, every trial's figure, and the
1-minute load average before and after (figures taken on a loaded machine must say so).

`--storage` measures the storage layer alone, in this process: DiskStorage.save() of batches of
`--batch` entries (one record, one fdatasync each, as the driver's group commit does) for
`--seconds`, off and on interleaved. Besides writes/s it reports the CPU time per write, which a
loaded shared machine disturbs far less than wall time: it is the figure that shows what the
sealing itself costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _common import emit, git_commit

HERE = Path(__file__).resolve().parent


def one(args, encrypt: bool) -> dict:
    cmd = [sys.executable, str(HERE / "raft_bench.py"), "--system", "swarmkit-py", "--nodes", str(args.nodes),
           "--seconds", str(args.seconds), "--value-size", str(args.value_size), "--inflight", str(args.inflight),
           "--client", args.client] + (["--encrypt"] if encrypt else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 120)
    if r.returncode != 0:  # e.g. a member too slow to start on an overloaded machine: say so, go on
        print(f"raft_bench failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return {"failed": True}
    return json.loads(r.stdout.strip().splitlines()[-1])


def storage_trial(encrypt: bool, seconds: float, batch: int, size: int) -> dict:
    import tempfile
    import time

    from swarmkit_py.raft.storage import DiskStorage
    from swarmkit_py.raft.types import Entry, HardState

    payload = os.urandom(size)
    with tempfile.TemporaryDirectory(prefix="bench-enc-") as d:
        s = DiskStorage(d, encrypted=encrypt)
        s.load()
        index = writes = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            ents = [Entry(1, index + i + 1, data=payload) for i in range(batch)]
            s.save(HardState(1, 1, index), ents)
            index += batch
            writes += batch
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        s.close()
    return {"writes_per_s": writes / wall, "cpu_us_per_write": 1e6 * cpu / writes}


def interleave(trials: int, run) -> dict[str, list[dict]]:
    """`run(encrypt)` alternately off and on, so background load hits both modes alike."""
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(trials):
        for mode in ("off", "on"):
            runs[mode].append(run(mode == "on"))
    return runs


def summarize(runs: dict[str, list[dict]], key: str, digits: int = 1) -> dict:
    """Median of `key` per mode, every sample, and the on-vs-off change of the medians in
    percent (writes/s: negative is the cost; CPU per write: positive is)."""
    vals = {m: [r[key] for r in rs if r.get(key) is not None] for m, rs in runs.items()}
    med = {m: statistics.median(v) if v else None for m, v in vals.items()}
    out = {f"{key}_{m}": None if med[m] is None else round(med[m], digits) for m in ("off", "on")}
    out[f"{key}_change_pct"] = (round(100 * (med["on"] - med["off"]) / med["off"], 1)
                                if med["off"] and med["on"] is not None else None)
    for m in ("off", "on"):
        out[f"{key}_samples_{m}"] = [round(x, digits) for x in vals[m]]
    return out


def figures(runs: dict[str, list[dict]], load0: float) -> dict:
    return {**summarize(runs, "writes_per_s"), **summarize(runs, "cpu_us_per_write", 2),
            "loadavg_1m_at_start": round(load0, 2), "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "commit": git_commit()}


def storage_main(args, out) -> None:
    load0 = os.getloadavg()[0]
    runs = interleave(args.trials, lambda enc: storage_trial(enc, args.seconds, args.batch, args.value_size))
    emit({"bench": "encryption_at_rest_storage", "batch": args.batch, "value_size": args.value_size,
          "trials": args.trials, "seconds": args.seconds, **figures(runs, load0)}, out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--value-size", type=int, default=1024)
    ap.add_argument("--inflight", type=int, default=1000)
    ap.add_argument("--client", choices=["inprocess", "connection"], default="inprocess")
    ap.add_argument("--storage", action="store_true", help="the storage layer alone, in this process")
    ap.add_argument("--batch", type=int, default=64, help="--storage: entries per save() (one fsync)")
    ap.add_argument("--out", help="also append the JSON line to this file")
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out) if args.out else None
    if args.storage:
        sys.path.insert(0, str(HERE.parent))
        return storage_main(args, out)
    load0 = os.getloadavg()[0]
    runs = interleave(args.trials, lambda enc: one(args, enc))
    emit({"bench": "encryption_at_rest", "nodes": args.nodes, "value_size": args.value_size,
          "inflight": args.inflight, "client": args.client, "trials": args.trials, "seconds": args.seconds,
          **figures(runs, load0), **summarize(runs, "p50_ms", 3),
          "elections": sum(r.get("term_changes") or 0 for rs in runs.values() for r in rs),
          "failed_trials": sum(1 for rs in runs.values() for r in rs if r.get("failed"))}, out)


if __name__ == "__main__":
    sys.exit(main())
