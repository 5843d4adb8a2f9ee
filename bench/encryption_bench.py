"""Cost of encryption at rest: committed Raft writes/s with the WAL and snapshots sealed
(AES-256-GCM data key, swarmkit_py/raft/storage/crypto.py) vs in clear, same cluster shape.

    python bench/encryption_bench.py [--nodes 3] [--trials 5] [--seconds 5] [--value-size 1024]
        [--inflight 1000] [--client inprocess|connection] [--out bench/results.jsonl]

Runs bench/raft_bench.py (real member processes on 127.0.0.1, fsync on every acknowledged
batch) alternately without and with --encrypt, `--trials` times each, interleaved so that
background load on a shared machine hits both modes alike. Prints ONE JSON line: the median
writes/s of each mode, the cost in percent of the median, every trial's figure, and the 1-minute
load average before and after (figures taken on a loaded machine must say so).
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
    if r.returncode != 0:
        raise SystemExit(f"raft_bench failed ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--value-size", type=int, default=1024)
    ap.add_argument("--inflight", type=int, default=1000)
    ap.add_argument("--client", choices=["inprocess", "connection"], default="inprocess")
    ap.add_argument("--out", help="also append the JSON line to this file")
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out) if args.out else None
    load0 = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(args.trials):
        for mode in ("off", "on"):
            runs[mode].append(one(args, mode == "on"))
    wps = {m: [r["writes_per_s"] for r in rs] for m, rs in runs.items()}
    p50 = {m: [r["p50_ms"] for r in rs if r["p50_ms"] is not None] for m, rs in runs.items()}
    med = {m: statistics.median(v) for m, v in wps.items()}
    emit({
        "bench": "encryption_at_rest",
        "nodes": args.nodes,
        "value_size": args.value_size,
        "inflight": args.inflight,
        "client": args.client,
        "trials": args.trials,
        "seconds": args.seconds,
        "writes_per_s_off": med["off"],
        "writes_per_s_on": med["on"],
        "cost_pct": round(100 * (med["off"] - med["on"]) / med["off"], 1) if med["off"] else None,
        "p50_ms_off": round(statistics.median(p50["off"]), 3) if p50["off"] else None,
        "p50_ms_on": round(statistics.median(p50["on"]), 3) if p50["on"] else None,
        "samples_off": wps["off"],
        "samples_on": wps["on"],
        "elections": sum(r.get("term_changes") or 0 for rs in runs.values() for r in rs),
        "loadavg_1m_at_start": round(load0, 2),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "commit": git_commit(),
    }, out)


if __name__ == "__main__":
    sys.exit(main())
