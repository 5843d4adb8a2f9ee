"""The Markdown table of bench/README.md's client-path section from bench/clientpath.jsonl:
`python bench/clientpath_table.py [bench/clientpath.jsonl]`.

One row per configuration (nodes, value size, W): swarmkit-py through client connections
(batched `kv.put_many`), the tree before the batching if it was run (one `kv.put` per write),
and PySyncObj in-process, with p50/p99 latency, CPU per write by role and the load average at
the start of each run; then the commit latency with one write in flight (W = 1). When a
configuration was run more than once, the last line wins.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _cell(r: dict | None, cpu: bool = False) -> str:
    if r is None:
        return "–"
    s = f"**{r['writes_per_s']:,.0f}** ({r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms) [{r['loadavg_1m_at_start']:.1f}]"
    if r.get("term_changes"):
        s += f", {r['term_changes']} election(s)"
    if r.get("errors"):
        s += f", {r['errors']:,} errors"
    if cpu and r.get("leader_cpu_us_per_write") is not None:
        s += (f"; µs/write {r['leader_cpu_us_per_write']:.1f} / {r['follower_cpu_us_per_write']:.1f} / "
              f"{r.get('client_cpu_us_per_write', 0):.1f}")
    return s


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("clientpath.jsonl"))
    rows: dict = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            kind = ("pysyncobj" if r["system"] == "pysyncobj"
                    else "batched" if r.get("batch", 1) > 1 else "per-write")
            rows[(r["nodes"], r["value_size"], r["inflight"], kind)] = r
    single = {k: r for k, r in rows.items() if k[2] == 1}  # commit latency: one write in flight
    rows = {k: r for k, r in rows.items() if k[2] > 1}
    print("| nodes | value | W | swarmkit-py, client connections, batched: writes/s (p50 / p99) [load]; "
          "CPU µs/write leader / each follower / client | before: one `kv.put` per write | "
          "PySyncObj in-process (no fsync) | batched / PySyncObj |")
    print("|---|---|---|---|---|---|---|")
    for n, size, w in sorted({k[:3] for k in rows}):
        new, old, pso = (rows.get((n, size, w, k)) for k in ("batched", "per-write", "pysyncobj"))
        ratio = f"{new['writes_per_s'] / pso['writes_per_s']:.1f}x" if new and pso and pso["writes_per_s"] else "–"
        print(f"| {n} | {'1 KiB' if size == 1024 else f'{size} B'} | {w:,} | {_cell(new, cpu=True)} | "
              f"{_cell(old, cpu=True)} | {_cell(pso)} | {ratio} |")
    if single:
        print()
        print("| nodes | commit latency, W = 1, 10 B: swarmkit-py over a connection (`kv.put`) p50 / p99 | "
              "PySyncObj in-process p50 / p99 |")
        print("|---|---|---|")
        for n in sorted({k[0] for k in single}):
            ours, pso = single.get((n, 10, 1, "per-write")), single.get((n, 10, 1, "pysyncobj"))
            cell = lambda r: "–" if r is None else (  # noqa: E731
                f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms [{r['loadavg_1m_at_start']:.1f}]")
            print(f"| {n} | {cell(ours)} | {cell(pso)} |")


if __name__ == "__main__":
    main()
