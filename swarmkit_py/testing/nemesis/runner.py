"""Rounds of clients + nemesis against a lab cluster, each round one register (one service)
and one checked history; then a report.

A round: wait until the cluster is healthy; create the round's register (a service with no
replicas, label = "0"); start one client per manager; play the round's fault schedule (a fault,
held for a few seconds, undone, a quiet gap, the next); undo everything; wait until the
cluster is healthy again (a manager that does not come back, e.g. after its disk was full, is
an anomaly of its own); let the clients run a little more on the healed cluster; stop them;
read the register once more on every manager (the final reads: nothing acknowledged may be
missing); check the history; save it (JSON lines), the verdict and a timeline plot; remove the
service.

The schedule of a round is drawn from its seed, so a round is replayed by its seed (the
cluster's timing is not: the schedule is the same, the interleaving is not).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .checker import check, summarize
from .client import INITIAL, Client, create_register, read_register
from .cluster import ClusterUnhealthy, LabCluster
from .faults import KINDS, Nemesis
from .history import FAIL, INFO, OK, History, fault_intervals
from .plot import timeline


@dataclass
class Step:
    at: float  # seconds after the round's clients started
    kind: str
    hold: float


def schedule(rng: random.Random, seconds: float, kinds: list[str] | tuple[str, ...], each_once: bool = False,
             quiet: tuple[float, float] = (1.0, 3.0), hold: tuple[float, float] = (2.0, 6.0)) -> list[Step]:
    """Faults one after another: a quiet gap, a fault held for a while, ... up to `seconds`.
    `each_once`: every kind exactly once, in a seeded order (a short run still covers them all)."""
    out: list[Step] = []
    t = rng.uniform(*quiet)
    order = rng.sample(list(kinds), len(kinds)) if each_once else None
    while True:
        kind = order[len(out)] if order is not None else rng.choice(list(kinds))
        h = rng.uniform(*hold)
        if order is None and t + h > seconds:
            break
        out.append(Step(round(t, 2), kind, round(h, 2)))
        t += h + rng.uniform(*quiet)
        if order is not None and len(out) == len(order):
            break
    return out


@dataclass
class RoundResult:
    round: int
    seed: int
    service: str
    valid: bool | None
    ops: int
    counts: dict[str, int]
    faults: dict[str, int]
    anomalies: list[dict]
    seconds: float
    recovered_s: float | None
    history: str
    plot: str | None
    disk_full_errors: list[str] = field(default_factory=list)
    nemesis_errors: list[str] = field(default_factory=list)
    summary: str = ""


def _log(msg: str) -> None:
    print(f"[nemesis {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_round(cluster: LabCluster, managers: list[str], disk_hosts: list[str], n: int, seed: int,
              seconds: float, kinds: list[str], out_dir: Path, each_once: bool = False,
              heal_timeout: float = 120.0, tail: float = 3.0, hold: tuple[float, float] = (2.0, 6.0),
              quiet: tuple[float, float] = (1.0, 3.0)) -> RoundResult:
    rng = random.Random(seed)
    rdir = out_dir / f"round-{n:03d}"
    rdir.mkdir(parents=True, exist_ok=True)
    cluster.wait_healthy(managers, heal_timeout)
    name = f"nemesis-{os.getpid()}-{n}"
    service = cluster.retry("create the register", lambda a: create_register(a, name), managers)
    # every manager holds the service before the clients start
    for h in managers:
        cluster.retry(f"read the new register on {h}", lambda a: read_register(a, service), [h], 30)

    history = History()
    nemesis = Nemesis(cluster, history, rng, managers, disk_hosts)
    steps = schedule(rng, seconds, nemesis.possible(kinds), each_once=each_once, quiet=quiet, hold=hold)
    stop = threading.Event()
    stride = len(managers)
    clients = [Client(history, i, stride, h, lambda h=h: cluster.api(h), service, stop, seed * 1000 + i)
               for i, h in enumerate(managers)]
    for c in clients:
        c.start()
    t0 = time.monotonic()
    nemesis_errors: list[str] = []
    try:
        for step in steps:
            delay = t0 + step.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                fault = nemesis.start(step.kind)
            except Exception as e:  # noqa: BLE001 - the round goes on; the report says so
                nemesis_errors.append(f"start {step.kind}: {e}")
                continue
            time.sleep(step.hold)
            try:
                nemesis.stop(fault)
            except Exception as e:  # noqa: BLE001
                nemesis_errors.append(f"stop {step.kind}: {e}")
        left = t0 + max(seconds, steps[-1].at + steps[-1].hold if steps else 0) - time.monotonic()
        if left > 0:
            time.sleep(left)
    finally:
        try:
            nemesis.stop_all()
        except Exception as e:  # noqa: BLE001
            nemesis_errors.append(f"heal: {e}")
    anomalies_extra: list[dict] = []
    recovered: float | None = None
    try:
        recovered = cluster.wait_healthy(managers, heal_timeout)
    except ClusterUnhealthy as e:
        anomalies_extra.append({"kind": "no-recovery", "message": str(e), "ops": []})
    time.sleep(tail)  # clients on the healed cluster
    stop.set()
    for c in clients:
        c.join(30)
    _final_reads(cluster, history, managers, service, stride)

    events = history.events
    hist_path = history.save(rdir / "history.jsonl")
    result = check(events, initial=INITIAL)
    anomalies = [a.to_dict() for a in result.anomalies] + anomalies_extra
    valid = result.valid if not anomalies_extra else False
    plot_path = None
    try:
        plot_path = str(timeline(events, result, rdir / "timeline.png", title=f"round {n} (seed {seed})"))
    except Exception as e:  # noqa: BLE001 - a plot is not worth losing the verdict for
        nemesis_errors.append(f"plot: {e}")
    disk_errors = _disk_full_errors(events, disk_hosts)
    rr = RoundResult(n, seed, service, valid, len(result.ops), summarize(result.ops), dict(nemesis.counts),
                     anomalies, round(time.monotonic() - t0, 1), None if recovered is None else round(recovered, 1),
                     str(hist_path), plot_path, disk_errors, nemesis_errors,
                     result.summary() if not anomalies_extra else anomalies_extra[0]["message"])
    (rdir / "check.json").write_text(json.dumps({**asdict(rr), "steps": [asdict(s) for s in steps],
                                                 "search": result.to_dict()}, indent=2, default=str))
    try:
        cluster.retry("remove the register", lambda a: a.remove_service(service), managers, 20)
    except ClusterUnhealthy:
        pass
    return rr


def _final_reads(cluster: LabCluster, history: History, managers: list[str], service: str, stride: int) -> None:
    """One read per manager after the clients stopped, retried until it answers."""
    for i, h in enumerate(managers):
        p = 10_000 + i
        deadline = time.monotonic() + 30
        while True:
            history.invoke(p, "read", node=h)
            try:
                value, version, _ = cluster._with(h, lambda a: read_register(a, service, linearizable=True), 5)
            except Exception as e:  # noqa: BLE001
                history.complete(p, INFO, "read", node=h, error=str(e)[:160])
                p += stride * 1000
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
                continue
            history.complete(p, OK, "read", value, node=h, version=version, final=True)
            break


def _disk_full_errors(events, disk_hosts: list[str]) -> list[str]:
    """What clients of a manager were told while its disk was full (distinct messages)."""
    spans = [(t0, t1, d.get("target") or []) for k, t0, t1, d in fault_intervals(events) if k == "disk-full"]
    seen: Counter[str] = Counter()
    for e in events:
        if e.type in (FAIL, INFO) and e.error and any(t0 <= e.time <= t1 + 1 and e.node in tgt for t0, t1, tgt in spans):
            seen[e.error[:200]] += 1
    return [f"{n}x {m}" for m, n in seen.most_common(8)]


@dataclass
class Report:
    started: str
    lab: str
    managers: list[str]
    seed: int
    rounds: list[RoundResult] = field(default_factory=list)
    wall_s: float = 0.0
    load: list[float] = field(default_factory=list)

    def totals(self) -> dict[str, Any]:
        faults: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        for r in self.rounds:
            faults.update(r.faults)
            counts.update(r.counts)
        return {"histories": len(self.rounds), "ops": sum(r.ops for r in self.rounds),
                "ops_by_outcome": dict(sorted(counts.items())), "faults": dict(sorted(faults.items())),
                "faults_total": sum(faults.values()),
                "anomalies": sum(len(r.anomalies) for r in self.rounds if r.valid is False),
                "invalid_histories": sum(1 for r in self.rounds if r.valid is False),
                "unknown_histories": sum(1 for r in self.rounds if r.valid is None),
                "nemesis_errors": sum(len(r.nemesis_errors) for r in self.rounds)}

    def write(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        data = {**{k: v for k, v in asdict(self).items() if k != "rounds"}, "totals": self.totals(),
                "rounds": [asdict(r) for r in self.rounds]}
        (out_dir / "report.json").write_text(json.dumps(data, indent=2, default=str))
        t = self.totals()
        lines = [f"# nemesis report ({self.started}, lab {self.lab}, managers {', '.join(self.managers)})", "",
                 f"- wall time {self.wall_s / 60:.1f} min, seed {self.seed}, load average {self.load}",
                 f"- histories checked: {t['histories']} ({t['invalid_histories']} not linearizable, "
                 f"{t['unknown_histories']} undecided)",
                 f"- ops: {t['ops']} ({', '.join(f'{k} {v}' for k, v in t['ops_by_outcome'].items())})",
                 f"- faults injected: {t['faults_total']} ({', '.join(f'{k} {v}' for k, v in t['faults'].items())})",
                 f"- anomalies: {t['anomalies']}", f"- nemesis errors: {t['nemesis_errors']}", "",
                 "| round | seed | ops | faults | verdict | recovered s | history |", "|---|---|---|---|---|---|---|"]
        for r in self.rounds:
            verdict = {True: "ok", False: "**ANOMALY**", None: "undecided"}[r.valid]
            lines.append(f"| {r.round} | {r.seed} | {r.ops} | {', '.join(f'{k}:{v}' for k, v in r.faults.items())} "
                         f"| {verdict} | {r.recovered_s} | {Path(r.history).relative_to(out_dir)} |")
        for r in self.rounds:
            if r.valid is False or r.nemesis_errors:
                lines += ["", f"## round {r.round}", "", r.summary]
                lines += [f"- {a['kind']}: {a['message']}" for a in r.anomalies]
                lines += [f"- nemesis: {e}" for e in r.nemesis_errors]
        errs = sorted({e for r in self.rounds for e in r.disk_full_errors})
        if errs:
            lines += ["", "## what clients of a manager with a full disk were told", ""]
            lines += [f"- {e}" for e in errs[:20]]
        path = out_dir / "report.md"
        path.write_text("\n".join(lines) + "\n")
        return path


def run(cluster: LabCluster, out_dir: Path, seed: int, minutes: float | None = None, rounds: int | None = None,
        round_seconds: float = 40.0, kinds: list[str] | None = None, each_once: bool = False,
        managers: list[str] | None = None, disk_hosts: list[str] | None = None,
        hold: tuple[float, float] = (2.0, 6.0), quiet: tuple[float, float] = (1.0, 3.0)) -> Report:
    """Rounds until `rounds` are done or `minutes` have passed (whichever is given)."""
    kinds = list(kinds or KINDS)
    managers = managers or cluster.managers()
    disk_hosts = [h for h in (disk_hosts or []) if h in managers]
    report = Report(time.strftime("%Y-%m-%d %H:%M:%S"), cluster.lab.name, managers, seed)
    t0 = time.monotonic()
    rng = random.Random(seed)
    n = 0
    while True:
        if rounds is not None and n >= rounds:
            break
        if minutes is not None and time.monotonic() - t0 > minutes * 60:
            break
        n += 1
        rseed = rng.randrange(1 << 30)
        r = run_round(cluster, managers, disk_hosts, n, rseed, round_seconds, kinds, out_dir, each_once=each_once,
                      hold=hold, quiet=quiet)
        report.rounds.append(r)
        _log(f"round {n} (seed {rseed}): {r.ops} ops, faults {r.faults}, {r.summary}")
        report.wall_s = time.monotonic() - t0
        report.load = [round(x, 2) for x in os.getloadavg()]
        report.write(out_dir)  # after every round: a run cut short still leaves a report
    return report
