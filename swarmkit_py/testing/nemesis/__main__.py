"""`python -m swarmkit_py.testing.nemesis`: build a lab cluster, run random nemesis schedules
for a while, check every history, write the report (what scripts/nemesis.sh runs).

Exit status: 0 when every history is linearizable and every round recovered, 1 otherwise,
2 for bad arguments or a lab that could not be built.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from .faults import KINDS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nemesis", description=__doc__.split("\n\n")[0])
    p.add_argument("--lab", default="nemesis", help="lab name (default nemesis)")
    p.add_argument("--hosts", type=int, default=5, help="lab hosts, all managers (default 5)")
    p.add_argument("--disk-mib", type=int, default=128,
                   help="size of the small disk under the last host's state dir (default 128; 0: none)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--minutes", type=float, help="run rounds for this long (default 30)")
    g.add_argument("--rounds", type=int, help="run this many rounds")
    p.add_argument("--round-seconds", type=float, default=40.0, help="fault schedule per round (default 40)")
    p.add_argument("--seed", type=int, default=None, help="seed of the whole run (default: from the clock)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"faults to draw from (default {','.join(KINDS)})")
    p.add_argument("--out", default=None, help="report directory (default .lab/nemesis-reports/<time>)")
    p.add_argument("--reuse", action="store_true", help="use the lab's running cluster instead of building one")
    p.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    a = p.parse_args(argv)
    kinds = [k for k in a.kinds.split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        p.error(f"--kinds: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(KINDS)}")
    if os.geteuid() != 0:
        print("nemesis: the lab needs root (namespaces, bridge, iptables, cgroups)", file=sys.stderr)
        return 2
    if a.rounds is None and a.minutes is None:
        a.minutes = 30.0

    from ...deploy.lab import Lab
    from .cluster import REPO, LabCluster
    from .runner import run

    seed = a.seed if a.seed is not None else int(time.time())
    out = Path(a.out or REPO / ".lab" / "nemesis-reports" / time.strftime("%Y%m%d-%H%M%S")).absolute()
    out.mkdir(parents=True, exist_ok=True)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "SWARMKIT_DEPLOY_DIR": str(out / "operator"), "SWARMKIT_DEPLOY_LOGS": str(out / "deploy-logs")}
    if head:
        env.setdefault("SWARMKIT_BUILD_REF", head)
    lab = Lab(a.lab)
    cluster = LabCluster(lab, env)
    disk_host = f"h{a.hosts}"
    try:
        if a.reuse:
            cluster.invoke("docker-env")
        else:
            t0 = time.monotonic()
            lab.down()
            lab.up(a.hosts, docker=True, disks={disk_host: a.disk_mib} if a.disk_mib else None)
            cluster.bootstrap(a.hosts)
            print(f"nemesis: lab {lab.name}, {a.hosts} managers formed in {time.monotonic() - t0:.0f}s", flush=True)
        report = run(cluster, out, seed, minutes=a.minutes, rounds=a.rounds, round_seconds=a.round_seconds,
                     kinds=kinds, disk_hosts=[disk_host] if a.disk_mib else [])
    finally:
        if not a.keep:
            lab.down()
    t = report.totals()
    print(f"nemesis: {t['histories']} histories, {t['ops']} ops, faults {t['faults']}, "
          f"anomalies {t['anomalies']} ({t['invalid_histories']} histories not linearizable); report {out / 'report.md'}")
    return 0 if not t["invalid_histories"] and not t["unknown_histories"] else 1


if __name__ == "__main__":
    sys.exit(main())
