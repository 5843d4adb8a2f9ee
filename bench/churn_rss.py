"""A manager's memory under churn (issue 13, round 15): real agents on this machine's Docker
engine (one manager, one worker, `AgentCluster`), then CYCLES times: a service of 50 replicas
on the worker, `docker service ps`, `docker service rm`, settled. Prints ONE JSON line: the RSS
(MB) of each agent at rest and after each cycle, and the manager's Raft applied index (what
the in-memory log has grown by: the whole log since the last snapshot is kept in memory).

    .venv/bin/python bench/churn_rss.py [--cycles 12] [--replicas 50] [--out bench/rss.jsonl]

Needs the machine's engine (`scripts/docker-up.sh`) and root.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, git_commit  # noqa: E402
from scale_bench import proc_rss_mb  # noqa: E402

from swarmkit_py.testing.agents import AgentCluster  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=12)
    ap.add_argument("--replicas", type=int, default=50)
    ap.add_argument("--settle", type=float, default=8.0)
    ap.add_argument("--out")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="skpy-churn-") as base:
        c = AgentCluster(Path(base))
        try:
            m1 = c.first_manager("m1")
            w1 = c.ready_worker("w1", m1)
            time.sleep(10)
            manager = [round(proc_rss_mb(m1.proc.pid), 1)]
            worker = [round(proc_rss_mb(w1.proc.pid), 1)]
            index = []
            for i in range(args.cycles):
                name = f"churn{i}"
                c.docker(m1, "service", "create", "--detach", "--name", name, "--replicas", str(args.replicas),
                         "--constraint", "node.role==worker", "swarmkit-py/busybox:latest", "sleep", "3600", timeout=60)
                want = f"{args.replicas}/{args.replicas}"
                c.wait_for(lambda name=name, want=want: c.docker(m1, "service", "ls", "--filter", f"name={name}",
                           "--format", "{{.Replicas}}").stdout.strip() == want, 240, "replicas running")
                c.docker(m1, "service", "ps", name)
                c.docker(m1, "service", "rm", name)
                c.wait_for(lambda: not c.docker(m1, "service", "ls", "-q").stdout.strip(), 60, "service removed")
                time.sleep(args.settle)
                manager.append(round(proc_rss_mb(m1.proc.pid), 1))
                worker.append(round(proc_rss_mb(w1.proc.pid), 1))
                index.append(next((v for k, v in c.metrics(m1).items() if "raft_apply_index" in k), None))
        finally:
            c.stop_all()
    emit({"bench": "churn_rss", "cycles": args.cycles, "replicas": args.replicas, "manager_rss_mb": manager,
          "worker_rss_mb": worker, "manager_applied_index": index,
          "manager_growth_per_cycle_mb": round((manager[-1] - manager[1]) / max(1, args.cycles - 1), 2),
          "commit": git_commit()}, args.out)


if __name__ == "__main__":
    main()
