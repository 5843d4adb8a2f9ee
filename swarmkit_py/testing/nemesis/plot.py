"""A history as a timeline PNG: one row per manager (its client's ops, whatever process number
they ran under, and the final read), one bar per operation from invoke to answer -- green ok,
grey fail, orange unknown (up to when the client gave up; it may still take effect later) --
faults as shaded spans, and the ops of an anomaly in red. Uses
matplotlib (the `bench` extra) with the Agg backend, so it runs headless."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from .checker import Op, Result
from .history import Event, fault_intervals

COLORS = {"ok": "#2e8b57", "fail": "#9e9e9e", "info": "#f0a030"}
FAULT_COLORS = {"crash": "#d62728", "partition-leader": "#1f77b4", "partition-minority": "#17becf",
                "partition-halves": "#9467bd", "freeze": "#8c564b", "disk-full": "#e377c2"}


def timeline(events: Iterable[Event], result: Result, path: Path | str, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    evs = list(events)
    ops: list[Op] = result.ops
    end = max([e.time for e in evs] + [0.0]) + 0.1
    bad = {o.index for a in result.anomalies for o in a.ops}
    rows = sorted({o.node or "?" for o in ops})
    row_of = {r: i for i, r in enumerate(rows)}
    height = max(3.0, min(20.0, 0.5 * len(rows) + 1.5))
    fig, ax = plt.subplots(figsize=(16, height))

    for kind, t0, t1, detail in fault_intervals(evs, end):
        color = FAULT_COLORS.get(kind, "#cccccc")
        ax.axvspan(t0, t1, color=color, alpha=0.12, lw=0)
        ax.text(t0, len(rows) + 0.2, f"{kind} {','.join(detail.get('target') or [])}", fontsize=7,
                color=color, rotation=0, va="bottom")

    label = len(ops) <= 250
    for o in ops:
        y = row_of[o.node or "?"]
        t1 = o.ret if not math.isinf(o.ret) else (o.answered if o.answered is not None else end)
        color = "#d00000" if o.index in bad else COLORS.get(o.status, "#000000")
        ax.barh(y, max(t1 - o.call, 0.002), left=o.call, height=0.7 if o.f == "cas" else 0.4, color=color,
                edgecolor="#d00000" if o.index in bad else "none", linewidth=1.5, alpha=0.6 if o.status == "info" else 1)
        if label or o.index in bad:
            text = (f"r {o.value}" if o.f == "read" and o.status == "ok" else
                    f"{o.value[0]}→{o.value[1]}" if o.f == "cas" else o.f)
            ax.text(o.call, y + 0.38, text, fontsize=5 if o.index not in bad else 7,
                    color="#d00000" if o.index in bad else "#333333")

    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    ax.set_ylim(-1, len(rows) + 1.2)
    ax.set_xlim(0, end)
    ax.set_xlabel("seconds since the start of the history (monotonic)")
    verdict = {True: "linearizable", False: "NOT linearizable", None: "unknown"}[result.valid]
    ax.set_title(f"{title} — {len(ops)} ops, {verdict}", fontsize=10)
    handles = [Patch(color=c, label=k) for k, c in COLORS.items()] + [Patch(color="#d00000", label="anomaly")]
    ax.legend(handles=handles, loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
