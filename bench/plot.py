"""Plot bench results side by side: `python bench/plot.py [bench/results.jsonl] [-o bench/raft_bench.png]`;
`--table` prints the Markdown table of bench/README.md from the same lines instead.

Reads the JSON lines that `raft_bench.py --out` and `failover_bench.py --out` append. When a
configuration was measured more than once, the last line wins (a rerun replaces, it does not
average with, an older figure measured on an older commit). Three panels: committed writes/s per
configuration, commit latency with one write in flight (p50 bar, p99 whisker), failover
median/max. Only matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent

# (label, predicate) for each series, in bar order.
SERIES = [
    ("swarmkit-py, in leader (fsync)", lambda r: r["system"] == "swarmkit-py" and r["client"] == "inprocess"),
    ("swarmkit-py, RPC client (fsync)", lambda r: r["system"] == "swarmkit-py" and r["client"] == "connection"),
    ("PySyncObj defaults (no fsync)", lambda r: r["system"] == "pysyncobj" and r.get("variant", "default") == "default"),
    ("PySyncObj + journal file", lambda r: r["system"] == "pysyncobj" and r.get("variant") == "journal"),
    ("PySyncObj batching off", lambda r: r["system"] == "pysyncobj" and r.get("variant") == "no-batch"),
]
COLORS = ["#1f77b4", "#6baed6", "#d62728", "#ff9896", "#9467bd"]


def load(path: Path) -> tuple[dict, dict]:
    thr: dict = {}
    fo: dict = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if r.get("bench") == "failover":
            fo[(r["system"], r["nodes"])] = r
        elif r.get("bench") == "throughput":
            key = (r["system"], r["client"], r.get("variant", "default"), r["nodes"], r["value_size"], r["inflight"])
            thr[key] = r
    return thr, fo


def _grouped(ax, groups: list, rows_for, value, err=None, log=False):
    width = 0.8 / len(SERIES)
    for si, (label, pred) in enumerate(SERIES):
        xs, ys, lo = [], [], []
        for gi, g in enumerate(groups):
            r = next((r for r in rows_for(g) if pred(r)), None)
            if r is None or value(r) is None:
                continue
            xs.append(gi + (si - (len(SERIES) - 1) / 2) * width)
            ys.append(value(r))
            lo.append(err(r) if err else 0)
        if xs:
            kw = {"yerr": [[0] * len(lo), lo], "capsize": 2} if err else {}
            ax.bar(xs, ys, width, label=label, color=COLORS[si], **kw)
    ax.set_xticks(range(len(groups)))
    if log:
        ax.set_yscale("log")


def _cell(r: dict | None, what: str) -> str:
    if r is None:
        return "—"
    if what == "wps":
        txt = f"{r['writes_per_s']:,.0f}"
    else:
        txt = f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms" if r["p50_ms"] is not None else "no writes"
    flags = []
    if r.get("term_changes"):
        flags.append(f"{r['term_changes']} election(s)")
    if r.get("errors"):
        flags.append(f"{r['errors']:,} errors")
    return txt + (f" ({', '.join(flags)})" if flags else "")


def table(thr: dict, fo: dict) -> str:
    """The README table, in Markdown: one row per figure and node count, systems side by side.
    Elections (term changes on the leader) and failed writes during a run are flagged in the cell."""
    def get(system, client, variant, n, size, w):
        return thr.get((system, client, variant, n, size, w))

    lines = ["| figure | nodes | swarmkit-py, load in leader (fsync) | swarmkit-py, RPC client (fsync) "
             "| PySyncObj defaults (no fsync) | in-leader / PySyncObj |", "|---|---|---|---|---|---|"]
    for size in (10, 1024):
        for w in (1000, 10000):
            for n in (3, 5):
                a = get("swarmkit-py", "inprocess", "default", n, size, w)
                b = get("swarmkit-py", "connection", "default", n, size, w)
                c = get("pysyncobj", "inprocess", "default", n, size, w)
                if not (a or b or c):
                    continue
                ratio = f"{a['writes_per_s'] / c['writes_per_s']:.1f}x" if a and c and c["writes_per_s"] else "—"
                label = f"writes/s, {'1 KiB' if size == 1024 else f'{size} B'}, W={w:,}"
                lines.append(f"| {label} | {n} | {_cell(a, 'wps')} | {_cell(b, 'wps')} | {_cell(c, 'wps')} | {ratio} |")
    for n in (3, 5):
        j = get("pysyncobj", "inprocess", "journal", n, 10, 10000)
        if j:
            lines.append(f"| writes/s, 10 B, W=10,000, PySyncObj with journal file | {n} | | | {_cell(j, 'wps')} | |")
    for n in (3, 5):
        a = get("swarmkit-py", "inprocess", "default", n, 10, 1)
        b = get("swarmkit-py", "connection", "default", n, 10, 1)
        c = get("pysyncobj", "inprocess", "default", n, 10, 1)
        if a or b or c:
            lines.append(f"| commit latency p50 / p99, W=1, 10 B | {n} | {_cell(a, 'lat')} | {_cell(b, 'lat')} "
                         f"| {_cell(c, 'lat')} | |")
    for n in (3, 5):
        c = get("pysyncobj", "inprocess", "no-batch", n, 10, 1)
        if c:
            lines.append(f"| same, PySyncObj `appendEntriesUseBatch=False` | {n} | | | {_cell(c, 'lat')} | |")
    for n in sorted({k[1] for k in fo}):
        a, c = fo.get(("swarmkit-py", n)), fo.get(("pysyncobj", n))
        def f(r):
            if r is None:
                return "—"
            bad = f", {r['failed_trials']} failed" if r.get("failed_trials") else ""
            if r["median_s"] is None:
                return f"no successful trial{bad}"
            return f"median {r['median_s']:.3f} s, max {r['max_s']:.3f} s ({len(r['samples'])} trials{bad})"
        lines.append(f"| failover: SIGKILL leader -> first write | {n} | {f(a)} | | {f(c)} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", nargs="?", default=str(HERE / "results.jsonl"))
    ap.add_argument("-o", "--output", default=str(HERE / "raft_bench.png"))
    ap.add_argument("--table", action="store_true", help="print the README's Markdown table instead of plotting")
    args = ap.parse_args(argv)
    thr, fo = load(Path(args.results))
    if args.table:
        print(table(thr, fo))
        return
    rows = list(thr.values())

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), gridspec_kw={"width_ratios": [3, 1.3, 1]})

    groups = sorted({(r["nodes"], r["value_size"], r["inflight"]) for r in rows if r["inflight"] > 1},
                    key=lambda g: (g[1], g[2], g[0]))
    ax = axes[0]
    _grouped(ax, groups, lambda g: [r for r in rows if (r["nodes"], r["value_size"], r["inflight"]) == g],
             lambda r: r["writes_per_s"])
    ax.set_xticklabels([f"{n} nodes\n{'1 KiB' if s == 1024 else f'{s} B'}\nW={w:,}" for n, s, w in groups], fontsize=8)
    ax.set_ylabel("committed writes / s")
    ax.set_title("Throughput (higher is better)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

    lgroups = sorted({(r["nodes"], r["value_size"]) for r in rows if r["inflight"] == 1})
    ax = axes[1]
    _grouped(ax, lgroups, lambda g: [r for r in rows if r["inflight"] == 1 and (r["nodes"], r["value_size"]) == g],
             lambda r: r["p50_ms"], err=lambda r: max(0.0, (r["p99_ms"] or 0) - (r["p50_ms"] or 0)), log=True)
    ax.set_xticklabels([f"{n} nodes, {'1 KiB' if s == 1024 else f'{s} B'}" for n, s in lgroups], fontsize=8)
    ax.set_ylabel("ms (log scale)")
    ax.set_title("Commit latency, 1 in flight\n(bar p50, whisker p99; lower is better)")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)

    ax = axes[2]
    systems = [s for s in ("swarmkit-py", "pysyncobj") if any(k[0] == s for k in fo)]
    for i, s in enumerate(systems):
        r = next(v for k, v in fo.items() if k[0] == s)
        if r["median_s"] is None:  # every trial failed: nothing to draw, the table says so
            continue
        c = COLORS[0] if s == "swarmkit-py" else COLORS[2]
        ax.bar([i - 0.2], [r["median_s"]], 0.4, color=c, label="median" if i == 0 else None)
        ax.bar([i + 0.2], [r["max_s"]], 0.4, color=c, alpha=0.45, label="max" if i == 0 else None)
        ax.text(i - 0.2, r["median_s"], f"{r['median_s']:.2f}", ha="center", va="bottom", fontsize=8)
        ax.text(i + 0.2, r["max_s"], f"{r['max_s']:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(systems)))
    ax.set_xticklabels([f"{s}\n({fo[next(k for k in fo if k[0] == s)]['trials']} trials)" for s in systems], fontsize=8)
    ax.set_ylabel("seconds from SIGKILL to first write")
    ax.set_title("Failover, 5 nodes (lower is better)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

    # What our members ran: the snapshot's commit when run_all.sh used one, else the tree's HEAD.
    ours = [r for r in [*rows, *fo.values()] if r["system"] == "swarmkit-py"]
    commits = sorted({r.get("src_commit") or r.get("commit") or "?" for r in ours})
    fig.suptitle(f"swarmkit-py Raft (commit {', '.join(commits)}) vs PySyncObj 0.3.17, same machine, 127.0.0.1",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(args.output)


if __name__ == "__main__":
    main()
