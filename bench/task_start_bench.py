"""Task start latency on one worker's executor: N tasks prepared and started at once.

    python bench/task_start_bench.py [--tasks 50] [--rounds 3] [--out bench/rss.jsonl]

The worker's own executor (`DockerExecutor`'s engine client, `Controller`: image check,
create, start, inspect until running) on the machine's Docker engine, with tasks made as the
dispatcher sends them (busybox `sleep`, no networks). Each round starts `--tasks` controllers
at once on one event loop, as a worker given that many tasks does, and records each task's time
from its prepare to RUNNING (p50, max), the round's wall time and the CPU this process spent
on it (`cpu_s`: the executor's side of the starts, engine client included, which depends less
on the machine's load than the times do); then stops and removes them (grace 0). Run it from
the tree to measure (it imports that tree's swarmkit_py), so the same script compares two
versions of the executor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, git_commit  # noqa: E402


async def one_round(n: int, image: str) -> dict:
    from swarmkit_py.store.objects import TaskState
    from swarmkit_py.worker.executor import Controller, DockerExecutor
    from tests.unit.test_executor_fixtures import assigned

    node = f"bench-start-{uuid.uuid4().hex[:8]}"
    executor = DockerExecutor()
    client = await executor.client()
    tasks = [assigned(node_id=node, slot=i + 1, service_name="startbench", Image=image,
                      Command=["sleep", "1d"], StopGracePeriod=0) for i in range(n)]
    ctls = [Controller(client, t) for t in tasks]

    async def start(ctl) -> float:
        t0 = time.monotonic()
        await ctl.prepare()
        st = await ctl.start()
        assert st.state == TaskState.RUNNING, st
        return time.monotonic() - t0

    t0, cpu0 = time.monotonic(), time.process_time()
    took = await asyncio.gather(*(start(c) for c in ctls))
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    await asyncio.gather(*(c.shutdown(grace=0) for c in ctls))
    executor.close()
    return {"wall_s": round(wall, 2), "p50_s": round(statistics.median(took), 2),
            "max_s": round(max(took), 2), "cpu_s": round(cpu, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image", default="swarmkit-py/busybox:latest")
    ap.add_argument("--out")
    args = ap.parse_args()
    out: dict = {"bench": "task_start", "tasks": args.tasks, "commit": git_commit(),
                 "load1_start": round(os.getloadavg()[0], 2)}
    out["rounds"] = [asyncio.run(one_round(args.tasks, args.image)) for _ in range(args.rounds)]
    out["load1_end"] = round(os.getloadavg()[0], 2)
    emit(out, args.out)


if __name__ == "__main__":
    main()
