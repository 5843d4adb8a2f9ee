"""Plot the lab rescheduling figures: `python bench/plot_reschedule.py [bench/results.jsonl]
[-o bench/reschedule_lab.png]`.

Reads the JSON lines `reschedule_bench.py --lab --out` appends (`"bench": "reschedule-lab"`);
for each (layout, victim) the last line wins. One strip per configuration: every trial's time
from the power cut to 3 replicas Running on survivors, the median as a bar, the issue's targets
as dashed lines and Docker Swarm's median on the same machine (../shared/notes/lab.md) as a
marker; runs of `--stress` (the same benchmark while busy loops load the machine) as orange
crosses beside their strip. Agg backend only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
ORDER = [("readme", "leader"), ("seed", "leader"), ("readme", "worker"), ("seed", "worker")]
LABEL = {"readme": "7 hosts, 5 managers", "seed": "5 hosts, 3 managers"}
TARGET = {"leader": (4.0, 6.0), "worker": (3.0, None)}  # median, max
SWARM = {("readme", "leader"): 50.7, ("seed", "leader"): 50.0,
         ("readme", "worker"): 16.4, ("seed", "worker"): 17.4}


def load(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if r.get("bench") == "reschedule-lab":
                out[(r["layout"], r["victim"])] = r
    return out


def plot(rows: dict, output: str, stress: dict | None = None) -> None:
    keys = [k for k in ORDER if k in rows]
    stress = stress or {}
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for i, k in enumerate(keys):
        r = rows[k]
        xs = [i + (j % 7 - 3) * 0.035 for j in range(len(r["samples"]))]
        ax.bar(i, r["median_s"], 0.6, color="#c6dbef", zorder=1)
        ax.scatter(xs, r["samples"], s=14, color="#08519c", zorder=3)
        if k in stress:  # the same trials with busy loops added (the false-Down check)
            s = stress[k]
            ax.scatter([i - 0.24] * len(s["samples"]), s["samples"], s=12, marker="x", color="#e6550d",
                       zorder=3, label=f"with busy loops (load {s['load1_median']:.0f})")
        med, mx = TARGET[k[1]]
        ax.hlines(med, i - 0.35, i + 0.35, colors="#2ca02c", linestyles="dashed", zorder=2)
        if mx:
            ax.hlines(mx, i - 0.35, i + 0.35, colors="#d62728", linestyles="dashed", zorder=2)
        ax.annotate(f"Swarm median {SWARM[k]:.1f} s", (i, 0.3), ha="center", fontsize=7, color="#555")
        ax.annotate(f"median {r['median_s']:.2f} s\nmax {r['max_s']:.2f} s\n"
                    f"{r['trials']} trials, load {r['load1_median']:.0f}",
                    (i + 0.32, r["max_s"]), fontsize=7, va="bottom")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{'leader' if v == 'leader' else 'non-leader'} crash\n{LABEL[lay]}" for lay, v in keys])
    ax.set_ylabel("seconds from the power cut to 3 replicas running")
    ax.set_ylim(0, max(7.0, max(max(rows[k]["samples"]) for k in keys) + 1))
    moved = sum(r["healthy_tasks_moved"] for r in [*rows.values(), *stress.values()])
    shown = sum(r["live_nodes_not_ready_seen"] for r in [*rows.values(), *stress.values()])
    if stress:
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, labels, loc="upper right", fontsize=7)
    ax.set_title("Power cut of a lab host (one Docker engine per host): time to 3 replicas\n"
                 f"dashed: issue 10 targets (green median, red max); over all trials: {moved} healthy "
                 f"tasks moved, {shown} live nodes seen not Ready", fontsize=9)
    fig.tight_layout()
    fig.savefig(output, dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", default=str(HERE / "results.jsonl"))
    ap.add_argument("-o", "--output", default=str(HERE / "reschedule_lab.png"))
    ap.add_argument("--stress", default=str(HERE / "reschedule_stress.jsonl"),
                    help="the same runs under added load (orange crosses), if the file exists")
    a = ap.parse_args(argv)
    rows = load(Path(a.results))
    stress = load(Path(a.stress)) if Path(a.stress).exists() else {}
    if not rows:
        raise SystemExit(f"{a.results}: no reschedule-lab lines (run reschedule_bench.py --lab --out ...)")
    plot(rows, a.output, stress)
    print(a.output)


if __name__ == "__main__":
    main()
