"""The replicated orchestrator's own cost while a `replicas: 100000` typo fills (issue 13),
in one process: no Raft, no API, no network, so the figure is the orchestrator's alone.

    python bench/orch_pass_bench.py [--replicas 100000] [--tasks 30000] [--report 50]
                                    [--scale-to 3] [--out F]

A store with a local proposer, the replicated orchestrator, and a stand-in for the nodes:
between two passes, the nodes report `--report` of the tasks on their way as running (one
transaction, as the dispatcher batches status reports). Runs until `--tasks` tasks exist and
prints ONE JSON line: passes, tasks made, CPU time inside `reconcile` in total and per pass,
and per pass over the last 10 % of passes (when the service holds the most slots): flat if a
pass costs what changed, growing with the tasks if it walks them. With `--scale-to N`, the
typo is then fixed by a scale (as `docker service scale typo=N`), and the passes that stop the
tasks above N (a budget's worth each) are timed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, git_commit  # noqa: E402

from swarmkit_py.manager.orchestrator import ReplicatedOrchestrator  # noqa: E402
from swarmkit_py.manager.proposer import LocalProposer  # noqa: E402
from swarmkit_py.store import (  # noqa: E402
    ContainerSpec,
    MemoryStore,
    ReplicatedService,
    Service,
    ServiceMode,
    ServiceSpec,
    TaskSpec,
    TaskState,
    Transaction,
)


async def run(args) -> dict:
    store = MemoryStore()
    proposer = LocalProposer(store)
    svc = Service(id="typo", spec=ServiceSpec(
        name="typo", task_template=TaskSpec(container_spec=ContainerSpec(image="busybox")),
        mode=ServiceMode(replicated=ReplicatedService(replicas=args.replicas))))
    await proposer.propose(Transaction().create(svc))
    orch = ReplicatedOrchestrator(proposer)
    spent: list[float] = []
    real = orch.reconcile

    def timed(view, batch, events):
        t0 = time.process_time()
        real(view, batch, events)
        spent.append(time.process_time() - t0)

    orch.reconcile = timed
    nodes = store.watch("task", actions=("create",))
    on_their_way: list[str] = []
    orch.follower.open()
    await orch.run_pass(None)
    made = 0
    while made < args.tasks:
        await orch.run_pass(orch.follower.poll())
        new = [e.new.id for e in nodes.drain()]
        made += len(new)
        on_their_way += new
        tx = Transaction()
        for tid in on_their_way[: args.report]:
            t = store.view().get_task(tid).clone()
            t.node_id, t.status.state = "n1", TaskState.RUNNING
            tx.update(t)
        del on_their_way[: args.report]
        if tx.ops:
            await proposer.propose(tx)
    tail = spent[-max(1, len(spent) // 10):]
    fill = len(spent)
    scale: dict = {}
    if args.scale_to is not None:
        s = store.view().get_service("typo").clone()
        s.spec.mode.replicated.replicas = args.scale_to
        await proposer.propose(Transaction().update(s))
        while (events := orch.follower.poll()) or orch._backlog:
            await orch.run_pass(events)
        down = spent[fill:]
        stopped = sum(1 for t in store.view().list("task") if t.desired_state == TaskState.SHUTDOWN)
        scale = {"scale_to": args.scale_to, "scale_down_stopped": stopped, "scale_down_passes": len(down),
                 "scale_down_reconcile_s": round(sum(down), 3),
                 "scale_down_per_pass_ms": round(1000 * sum(down) / max(1, len(down)), 3)}
    return {"bench": "orch_pass", "commit": git_commit(), "replicas": args.replicas, "tasks": made,
            "report": args.report, "passes": fill, "reconcile_s": round(sum(spent[:fill]), 3),
            "per_pass_ms": round(1000 * sum(spent[:fill]) / fill, 3),
            "per_pass_last_tenth_ms": round(1000 * sum(tail) / len(tail), 3),
            "per_task_made_us": round(1e6 * sum(spent[:fill]) / max(1, made), 1),
            **scale, "load1": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=100_000)
    p.add_argument("--tasks", type=int, default=30_000)
    p.add_argument("--report", type=int, default=50, help="tasks reported running between two passes")
    p.add_argument("--scale-to", type=int, help="then scale the service down to this and time the passes")
    p.add_argument("--out")
    args = p.parse_args()
    emit(asyncio.run(run(args)), args.out)


if __name__ == "__main__":
    main()
