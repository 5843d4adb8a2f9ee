"""`docker service logs -f` throughput and delay: lines/s from N tasks to one CLI client,
and the delay from a line's engine timestamp to the client reading it (p50/p99).

One agent (manager + worker) on this machine's Docker engine runs a service of N replicas
each printing lines as fast as its shell can (or `--rate` lines/s per task); the real
`docker service logs -f --timestamps` reads them through the leader's log broker. The delay
includes the engine's own log pipeline (json-file driver, the SDK stream on the worker), the
session hop and the API stream: what an operator sees.

    .venv/bin/python bench/logs_bench.py --tasks 3 --seconds 10 [--rate 200] [--out bench/results.jsonl]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import emit, source_id  # noqa: E402

from swarmkit_py.taskimage import TASK_IMAGE  # noqa: E402
from swarmkit_py.testing.agents import DOCKER, AgentCluster  # noqa: E402

LINE = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z (\S+)@\S+\s+\| ")


def parse_ns(date: bytes, frac: bytes) -> int:
    secs = datetime.fromisoformat(date.decode() + "+00:00").timestamp()
    return int(secs) * 1_000_000_000 + int(frac)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=0.0, help="lines/s per task (0: flat out)")
    ap.add_argument("--out")
    args = ap.parse_args()
    import docker

    engine = docker.from_env()
    sleep = f"sleep {1 / args.rate:.4f}; " if args.rate else ""
    script = f'i=0; while true; do echo "line $i"; i=$((i+1)); {sleep}done'
    with tempfile.TemporaryDirectory(prefix="logs-bench-") as tmp:
        c = AgentCluster(Path(tmp))
        try:
            m1 = c.first_manager()
            env = c.docker_env(m1)
            c.docker(m1, "service", "create", "-d", "--name", "logbench", "--replicas",
                     str(args.tasks), TASK_IMAGE, "sh", "-c", script)
            c.wait_for(lambda: c.docker(m1, "service", "ls", "--format", "{{.Replicas}}")
                       .stdout.strip() == f"{args.tasks}/{args.tasks}", 120, "tasks running")
            proc = subprocess.Popen([DOCKER, "service", "logs", "-f", "--tail", "0",
                                     "--timestamps", "logbench"], stdout=subprocess.PIPE,
                                    env=env)
            delays: list[int] = []
            tasks: set[bytes] = set()
            stop = threading.Event()
            t_start = [0.0]

            def read() -> None:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    now = time.time_ns()
                    m = LINE.match(raw)
                    if m and t_start[0]:
                        delays.append(now - parse_ns(m.group(1), m.group(2)))
                        tasks.add(m.group(3))
                    if stop.is_set():
                        break

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            time.sleep(2.0)  # warm-up: the subscription reaches every task
            t_start[0] = time.monotonic()
            load0 = os.getloadavg()
            time.sleep(args.seconds)
            count = len(delays)
            elapsed = time.monotonic() - t_start[0]
            stop.set()
            proc.kill()
            proc.wait()
            ds = sorted(delays[:count])
            q = statistics.quantiles(ds, n=100) if len(ds) >= 2 else [0.0] * 99
            emit({
                "bench": "logs", "tasks": args.tasks, "rate_per_task": args.rate or None,
                "seconds": round(elapsed, 2), "lines": count,
                "lines_per_s": round(count / elapsed, 1), "tasks_seen": len(tasks),
                "delay_ms_p50": round(q[49] / 1e6, 1), "delay_ms_p99": round(q[98] / 1e6, 1),
                "loadavg_start": [round(x, 2) for x in load0], **source_id(),
            }, args.out)
        finally:
            c.stop_all()
            c.remove_task_containers(engine)


if __name__ == "__main__":
    main()
