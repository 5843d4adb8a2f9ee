"""Plot scale_bench.py runs against N: `python bench/plot_scale.py [bench/scale.jsonl] [-o bench/scale.png]`;
`--table` prints the Markdown table of bench/README.md from the same lines instead.

Reads the JSON lines `scale_bench.py --out` appends; for each node count the last line wins
(a run that broke before all its tasks ran counts only when no complete run of that size
exists: its figures stop where it broke, and the panel titles say which sizes broke).
Four panels against N: convergence times (all joined, all Running), API latency (p50, p99),
the leader's CPU and RSS at steady state, and failover / heartbeat figures (sessions back,
down detection, heartbeat period, nodes wrongly Down). Only matplotlib's Agg backend.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent


def load(path: Path) -> list[dict]:
    runs: dict[int, dict] = {}
    broken: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if r.get("bench") != "scale":
                continue
            if r.get("all_running_s") is not None:
                runs[r["nodes"]] = r
            elif r.get("all_joined_s") is not None:
                broken[r["nodes"]] = r
    for n, r in broken.items():
        runs.setdefault(n, r)
    return [runs[n] for n in sorted(runs)]


def plot(runs: list[dict], out: Path) -> None:
    n = [r["nodes"] for r in runs]
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    a = ax[0][0]
    a.plot(n, [r.get("all_joined_s") for r in runs], "o-", label="all nodes joined (s)")
    a.plot(n, [r.get("all_running_s") for r in runs], "s-", label="all tasks Running after create (s)")
    a.set_title("convergence (10 tasks per node)")
    a = ax[0][1]
    a.plot(n, [r.get("api_p50_ms") for r in runs], "o-", label="API p50 (ms)")
    a.plot(n, [r.get("api_p99_ms") for r in runs], "s-", label="API p99 (ms)")
    a.plot(n, [r.get("api_steady_p99_ms") for r in runs], "^--", label="API p99 at steady state (ms)")
    a.axhline(360, color="grey", lw=0.8, ls=":", label="standalone Swarm p99 (360 ms)")
    a.set_title("node ls / service ls / service ps")
    a = ax[1][0]
    a.plot(n, [r.get("leader_cpu_pct") for r in runs], "o-", label="leader CPU (% of a core)")
    a.plot(n, [r.get("leader_rss_mb") for r in runs], "s-", label="leader RSS (MB)")
    a.plot(n, [r.get("heartbeats_per_s") for r in runs], "^--", label="heartbeats/s at the leader")
    a.set_title("leader at steady state")
    a = ax[1][1]
    a.plot(n, [r.get("failover_sessions_back_s") for r in runs], "o-", label="leader kill: every session back (s)")
    a.plot(n, [r.get("failover_dead_leader_down_s") for r in runs], "s-", label="dead leader's host Down after (s)")
    a.plot(n, [r.get("heartbeat_period_s") for r in runs], "^--", label="heartbeat period (s)")
    a.plot(n, [r.get("down_detection_s") for r in runs], "v--", label="worker down detection (s)")
    a.plot(n, [r.get("failover_nodes_marked_down") for r in runs], "x:", label="failover: live nodes marked Down")
    a.set_title("failover and down detection")
    broke = [str(r["nodes"]) for r in runs if r.get("error")]
    if broke:
        ax[0][0].set_title(f"convergence (10 tasks per node); broke at N = {', '.join(broke)}")
    for row in ax:
        for a in row:
            a.set_xlabel("simulated nodes (N)")
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
    loads = ", ".join(f"N={r['nodes']}: {r.get('load1_start', 0):.1f} ({r.get('commit')})" for r in runs)
    fig.suptitle(f"swarmkit-py scale_bench, 3 managers, 2 shared cores; load avg at start (commit):\n{loads}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


COLUMNS = ["nodes", "managers", "tasks", "all_joined_s", "all_running_s", "api_p50_ms", "api_p99_ms",
           "api_steady_p99_ms", "leader_cpu_pct", "leader_rss_mb", "heartbeats_per_s", "heartbeat_period_s",
           "down_detection_s", "failover_nodes_marked_down", "failover_tasks_moved", "failover_sessions_back_s",
           "failover_sessions_via_standby", "failover_dead_leader_down_s", "load1_start", "commit"]


def table(runs: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in runs:
        cells = []
        for c in COLUMNS:
            v = r.get(c)
            cells.append(f"{v:.1f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("results", nargs="?", default=str(HERE / "scale.jsonl"))
    p.add_argument("-o", "--out", default=str(HERE / "scale.png"))
    p.add_argument("--table", action="store_true")
    args = p.parse_args()
    runs = load(Path(args.results))
    if args.table:
        print(table(runs))
    else:
        plot(runs, Path(args.out))
        print(f"wrote {args.out} ({len(runs)} runs)")


if __name__ == "__main__":
    main()
