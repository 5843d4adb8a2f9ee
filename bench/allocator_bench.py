"""What one allocator pass costs the leader with many tasks in the store (issue 13).

During a 10,000-task fill the allocator makes a pass after every burst of changes; a profile
of the leader put it at 6 % of its CPU, most of it reading every task twice per pass. This
builds a store of `--nodes` nodes and `--tasks` tasks (no networks beyond `ingress`, as in
scale_bench, or `--networked` with a published port), then times the pass after each of
`--rounds` small bursts of task changes (a status update of `--burst` tasks), as the fill
does. One JSON line: the median and p90 pass in ms.

    python bench/allocator_bench.py --tasks 10000 --nodes 1000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, git_commit  # noqa: E402

from swarmkit_py.manager.allocator import Allocator  # noqa: E402
from swarmkit_py.manager.orchestrator.taskinit import new_task  # noqa: E402
from swarmkit_py.manager.proposer import LocalProposer  # noqa: E402
from swarmkit_py.store import (  # noqa: E402
    EndpointSpec,
    MemoryStore,
    Node,
    PortConfig,
    Service,
    ServiceSpec,
    TaskSpec,
    TaskState,
    TaskStatus,
    Transaction,
)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--nodes", type=int, default=1_000)
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--networked", action="store_true", help="services publish a port (ingress)")
    ap.add_argument("--out", help="also append the line to this JSONL file")
    args = ap.parse_args()

    store = MemoryStore()
    proposer = LocalProposer(store)
    tx = Transaction()
    for i in range(args.nodes):
        tx.create(Node(id=f"node{i}"))
    await proposer.propose(tx)
    alloc = Allocator(proposer)
    await alloc._pass_until_quiet()  # ingress, node addresses
    now = datetime.now(UTC)
    per = args.tasks // args.services
    for s in range(args.services):
        endpoint = EndpointSpec(ports=[PortConfig(target_port=80)]) if args.networked else None
        svc = Service(id=f"svc{s}", spec=ServiceSpec(name=f"s{s}", endpoint_spec=endpoint,
                                                     task_template=TaskSpec(container_spec={"Image": "x"})))
        await proposer.propose(Transaction().create(svc))
        for start in range(0, per, 500):
            tx = Transaction()
            for i in range(start, min(per, start + 500)):
                tx.create(new_task(svc, f"t{s}-{i}", now, slot=i + 1))
            await proposer.propose(tx)
        await alloc._pass_until_quiet()
    tasks = store.view().list("task")
    passes = []
    for r in range(args.rounds):
        tx = Transaction()
        for t in tasks[r * args.burst % len(tasks):][: args.burst]:
            u = store.view().get_task(t.id).clone()
            u.status = TaskStatus(state=TaskState.RUNNING, timestamp=datetime.now(UTC))
            tx.update(u)
        await proposer.propose(tx)
        t0 = time.perf_counter()
        await alloc._pass_until_quiet()
        passes.append((time.perf_counter() - t0) * 1000)
    passes.sort()
    emit({"bench": "allocator_pass", "tasks": len(tasks), "nodes": args.nodes, "networked": args.networked,
          "burst": args.burst, "rounds": args.rounds,
          "pass_p50_ms": round(statistics.median(passes), 3),
          "pass_p90_ms": round(passes[int(0.9 * (len(passes) - 1))], 3), "commit": git_commit()}, args.out)


if __name__ == "__main__":
    asyncio.run(main())
