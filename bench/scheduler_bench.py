"""Scheduler throughput, in process: N tasks onto M nodes with constraints and spread.

Default workload (issue 4's figure): 10 services x 1,000 replicas onto 1,000 nodes; half the
services are constrained to `node.labels.zone==a` (half the nodes) and spread over
`node.labels.rack` (20 racks). Two measurements:

- `core`: `Scheduler.schedule(pending, nodes, tasks_by_node)`, the pure decision, building
  its node set included (task and node objects are made before the clock starts);
- `loop`: the same workload through `SchedulerLoop` on a `LocalProposer` store: from the
  loop's start (one store read) until every task is `assigned` in the store, so it includes
  building the updated tasks, encoding the transactions and the store applying them.

Prints ONE JSON line: {"tasks", "nodes", "seconds", "tasks_per_s", ...} where `seconds` is
the core figure; the loop's are `loop_seconds` / `loop_tasks_per_s`. `--mode core|loop`
limits the run to one of them.

    .venv/bin/python bench/scheduler_bench.py [--services 10] [--replicas 1000] [--nodes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swarmkit_py.manager.proposer import LocalProposer  # noqa: E402
from swarmkit_py.manager.scheduler import Scheduler, SchedulerLoop  # noqa: E402
from swarmkit_py.store import (  # noqa: E402
    MemoryStore,
    Node,
    Task,
    TaskState,
    Transaction,
    new_id,
)


def make_nodes(count: int, racks: int) -> list[Node]:
    nodes = []
    for i in range(count):
        nodes.append(
            Node.model_validate(
                {
                    "ID": new_id(),
                    "Spec": {
                        "Role": "worker",
                        "Availability": "active",
                        "Labels": {"zone": "a" if i % 2 == 0 else "b", "rack": f"r{i % racks}"},
                    },
                    "Description": {
                        "Hostname": f"host-{i}",
                        "Platform": {"OS": "linux", "Architecture": "x86_64"},
                        "Resources": {"NanoCPUs": 64 * 10**9, "MemoryBytes": 256 * 2**30},
                        "Engine": {"Labels": {"disk": "ssd"}},
                    },
                    "Status": {"State": "ready"},
                    "Role": "worker",
                }
            )
        )
    return nodes


def make_tasks(services: int, replicas: int) -> list[Task]:
    tasks = []
    for s in range(services):
        service_id = new_id()
        placement: dict = {}
        if s % 2 == 0:
            placement = {
                "Constraints": ["node.labels.zone==a", "node.platform.os==linux"],
                "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.rack"}}],
            }
        spec = {
            "ContainerSpec": {"Image": f"busybox:{s}"},
            "Resources": {"Reservations": {"NanoCPUs": 10**8, "MemoryBytes": 2**26}},
            "Placement": placement,
        }
        for slot in range(1, replicas + 1):
            tasks.append(
                Task.model_validate(
                    {
                        "ID": new_id(),
                        "ServiceID": service_id,
                        "Slot": slot,
                        "Name": f"svc{s}.{slot}",
                        "Spec": spec,
                        "DesiredState": "running",
                        "Status": {"State": "pending", "Message": "pending task scheduling"},
                    }
                )
            )
    return tasks


def bench_core(nodes: list[Node], tasks: list[Task]) -> tuple[float, int]:
    gc.collect()
    t0 = time.perf_counter()
    decisions = Scheduler().schedule(tasks, nodes, {})
    seconds = time.perf_counter() - t0
    return seconds, sum(1 for d in decisions if d.placed)


async def bench_loop(
    nodes: list[Node], tasks: list[Task], timeout: float = 120.0
) -> tuple[float, int]:
    store = MemoryStore()
    proposer = LocalProposer(store)
    tx = Transaction()
    for n in nodes:
        tx.create(n)
    await proposer.propose(tx)
    for start in range(0, len(tasks), 1000):
        tx = Transaction()
        for t in tasks[start : start + 1000]:
            tx.create(t)
        await proposer.propose(tx)
    watcher = store.watch("task", actions=["update"])
    loop = SchedulerLoop(proposer)
    gc.collect()
    t0 = time.perf_counter()
    loop.start()
    assigned = 0
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while assigned < len(tasks):
            remaining = deadline - asyncio.get_running_loop().time()
            first = await asyncio.wait_for(watcher.get(), max(remaining, 0.001))
            for ev in [first, *watcher.drain()]:
                if ev.new is not None and ev.new.status.state == TaskState.ASSIGNED:
                    assigned += 1
        seconds = time.perf_counter() - t0
    finally:
        await loop.stop()
        watcher.close()
    return seconds, assigned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--replicas", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--racks", type=int, default=20)
    ap.add_argument("--mode", choices=["both", "core", "loop"], default="both")
    ap.add_argument("--out", type=Path, help="also append the JSON line to this file")
    args = ap.parse_args()

    nodes = make_nodes(args.nodes, args.racks)
    tasks = make_tasks(args.services, args.replicas)
    result: dict = {"tasks": len(tasks), "nodes": len(nodes)}
    if args.mode in ("both", "core"):
        seconds, placed = bench_core(nodes, tasks)
        result.update(
            seconds=round(seconds, 4), tasks_per_s=round(len(tasks) / seconds), placed=placed
        )
    if args.mode in ("both", "loop"):
        seconds, placed = asyncio.run(bench_loop(nodes, tasks))
        result.update(
            loop_seconds=round(seconds, 4),
            loop_tasks_per_s=round(len(tasks) / seconds),
            loop_placed=placed,
        )
        if "seconds" not in result:
            result.update(seconds=result["loop_seconds"], tasks_per_s=result["loop_tasks_per_s"])
    line = json.dumps(result)
    print(line)
    if args.out:
        with args.out.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
