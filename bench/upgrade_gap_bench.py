"""The write gap of a rolling upgrade: how long writes stall while the leader's host is upgraded.

    python bench/upgrade_gap_bench.py [--lab-name gap] [--hosts 3] [--rounds 2] [--keep-lab] [--out F]

Needs root (the local lab). A lab of `--hosts` hosts, every one a manager (`invoke bootstrap
--managers N`), a 1-replica service `gap`. Then, alternately, `invoke upgrade --no-handover`
(the leader's agent is restarted and the followers elect a successor: the behaviour before
issue 10) and `invoke upgrade` (leadership is handed to an upgraded manager first, Raft's
transfer), each to a new release (SWARMKIT_RELEASE_SUFFIX=gapN, same sources). During each
upgrade a writer does read-then-CAS service updates (`inspect` then `update` with the version
read, a label change that restarts no task) as fast as it can through the Docker API, moving to
another manager when the one it uses fails (1 s timeout per call). The figure is the longest
interval between two successful writes during the upgrade; the JSON line also lists the gaps
over 0.3 s with their offsets, and the upgrade's own leaderless/handover figure.

Prints ONE JSON line: `gap_no_handover_s` and `gap_handover_s` (max over rounds), per-round
details, load average. Only lab addresses are contacted; the lab is removed unless --keep-lab.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import emit, git_commit, source_id

ROOT = Path(__file__).resolve().parent.parent
INVOKE = str(ROOT / ".venv" / "bin" / "invoke")
IMAGE = "swarmkit-py/busybox:latest"


def _log(msg: str) -> None:
    print(f"[upgrade_gap_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def invoke(inv: Path, *args: str, env: dict | None = None, timeout: float = 1200) -> str:
    r = subprocess.run([INVOKE, *args, "--inventory", str(inv)], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(f"invoke {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout


class Writer(threading.Thread):
    """Read-then-CAS updates of service `gap` through any manager; records each success."""

    def __init__(self, inv_path: Path, hosts: list[str]):
        super().__init__(daemon=True)
        from swarmkit_py.deploy import api
        from swarmkit_py.deploy.inventory import load

        self.inv = load(inv_path)
        self.bundle = api.bundle_dir(self.inv)
        self.hosts = hosts
        self.ok: list[float] = []
        self.failures = 0
        self.conflicts = 0
        self._halt = threading.Event()
        self._clients: dict[str, object] = {}

    def client(self, h: str):
        from swarmkit_py.deploy import api

        if h not in self._clients:
            self._clients[h] = api.client(self.inv.hosts[h], self.bundle, timeout=1)
        return self._clients[h]

    def run(self) -> None:
        i = 0
        order = list(self.hosts)
        while not self._halt.is_set():
            h = order[0]
            try:
                c = self.client(h)
                svc = c.api.inspect_service("gap")
                c.api.update_service(svc["ID"], svc["Version"]["Index"], labels={"n": str(i)},
                                     fetch_current_spec=True)
                self.ok.append(time.monotonic())
                i += 1
            except Exception as e:
                if "out of sequence" in str(e):
                    self.conflicts += 1
                    continue
                self.failures += 1
                c = self._clients.pop(h, None)
                if c is not None:
                    c.close()
                order = order[1:] + order[:1]
                time.sleep(0.02)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def one_upgrade(inv: Path, hosts: list[str], handover: bool, suffix: str) -> dict:
    w = Writer(inv, hosts)
    w.start()
    time.sleep(2)
    t0 = time.monotonic()
    load = os.getloadavg()[0]
    out = invoke(inv, "upgrade", *([] if handover else ["--no-handover"]),
                 env={"SWARMKIT_RELEASE_SUFFIX": suffix})
    t1 = time.monotonic()
    time.sleep(2)
    w.stop()
    oks = [t for t in w.ok if t0 - 1 <= t <= t1 + 1]
    gaps = [(b - a, a - t0) for a, b in zip(oks, oks[1:], strict=False)]
    big = sorted(((round(g, 3), round(at, 1)) for g, at in gaps if g > 0.3), reverse=True)
    m = re.search(r"without a leader ([0-9.]+)s", out)
    return {
        "handover": handover,
        "max_gap_s": round(max(g for g, _ in gaps), 3) if gaps else None,
        "gaps_over_0_3s": big[:8],
        "writes": len(oks),
        "median_write_interval_ms": round(1000 * statistics.median([g for g, _ in gaps]), 1) if gaps else None,
        "failed_calls": w.failures,
        "upgrade_s": round(t1 - t0, 1),
        "upgrade_leader_figure_s": float(m.group(1)) if m else None,
        "load1": round(load, 2),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lab-name", default="gap")
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="upgrades of each kind, alternating")
    ap.add_argument("--keep-lab", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    from swarmkit_py.deploy.lab import Lab

    lab = Lab(a.lab_name)
    rounds = []
    try:
        lab.down()
        lab.up(a.hosts, docker=True)
        inv = lab.inventory_path
        hosts = [f"h{i}" for i in range(1, a.hosts + 1)]
        invoke(inv, "bootstrap", "--managers", str(a.hosts))
        invoke(inv, "docker-env")
        w = Writer(inv, hosts)
        w.client("h1").api.create_service({"ContainerSpec": {"Image": IMAGE, "Command": ["sleep", "36000"]}},
                                          name="gap")
        n = 0
        for _ in range(a.rounds):
            for handover in (False, True):
                n += 1
                r = one_upgrade(inv, hosts, handover, f"gap{n}")
                _log(f"upgrade {n} (handover={handover}): {r}")
                rounds.append(r)
    finally:
        if not a.keep_lab:
            lab.down()

    def worst(h):
        xs = [r["max_gap_s"] for r in rounds if r["handover"] == h and r["max_gap_s"] is not None]
        return max(xs) if xs else None

    emit({"bench": "upgrade-gap", "hosts": a.hosts, "managers": a.hosts, "rounds": a.rounds,
          "gap_no_handover_s": worst(False), "gap_handover_s": worst(True), "runs": rounds,
          "commit": git_commit(), **source_id()}, a.out)


if __name__ == "__main__":
    main()
