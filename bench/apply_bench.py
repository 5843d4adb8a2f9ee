"""What a Raft entry of the fill costs to apply (issue 13): encode, decode and apply of one
transaction of T new tasks, as the replicated orchestrator proposes them, and of T task
updates (a status change each, as the dispatcher's batched reports write). Every manager
applies every entry on its event loop, so this is a floor of a loop hold during a fill.

    python bench/apply_bench.py [--tasks 1000] [--rounds 7] [--out F]

Prints ONE JSON line: the median over rounds, in ms, of `encode_ms` (the proposer's side),
`apply_ms` (decode included: every other manager's side) and `apply_local_ms` (the proposer's
own store, applying from the writer's objects: `MemoryStore.apply_local`) for the creates and
the updates, and the entry's size. Each round is a new store, so its first entry meets the template for the first
time, as after a service create.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, git_commit  # noqa: E402

from swarmkit_py.manager.orchestrator.taskinit import new_task, template_parts  # noqa: E402
from swarmkit_py.store import MemoryStore, Service, Transaction  # noqa: E402
from swarmkit_py.store.ids import new_id  # noqa: E402
from swarmkit_py.store.objects.base import build_all  # noqa: E402
from swarmkit_py.store.objects.enums import TaskState  # noqa: E402


def service() -> Service:
    return Service.model_validate({
        "ID": new_id(),
        "Spec": {
            "Name": "web",
            "Labels": {"com.example.team": "edge"},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "nginx:1.27", "Args": ["nginx", "-g", "daemon off;"],
                                  "Env": ["A=1", "B=2"], "Labels": {"tier": "front"}},
                "Resources": {"Reservations": {"NanoCPUs": 10_000_000, "MemoryBytes": 16 << 20}},
                "RestartPolicy": {"Condition": "any", "MaxAttempts": 0},
            },
            "Mode": {"Replicated": {"Replicas": 1000}},
            "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080}]},
        },
    })


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - t0) * 1000, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out")
    a = ap.parse_args()
    build_all()
    figures: dict[str, list[float]] = {}
    for r in range(a.rounds):
        store, own = MemoryStore(), MemoryStore()  # a member that decodes; the proposer's
        svc = service()
        now = datetime.now(UTC)
        parts = template_parts(svc)
        tx = Transaction(handed_over=True)
        tasks = [new_task(svc, new_id(), now, slot=i + 1, parts=parts) for i in range(a.tasks)]
        for t in tasks:
            tx.create(t)
        ms, data = timed(tx.encode)
        figures.setdefault("create_encode_ms", []).append(ms)
        ms, _ = timed(store.apply, 2 * r + 1, data)
        figures.setdefault("create_apply_ms", []).append(ms)
        ms, _ = timed(own.apply_local, 2 * r + 1, data, tx)
        figures.setdefault("create_apply_local_ms", []).append(ms)
        # a status change each, as the dispatcher's status writer makes them (shallow copies)
        tx = Transaction(handed_over=True)
        for t in store.view().tasks():
            status = t.status.model_copy(update={"state": TaskState.RUNNING, "timestamp": datetime.now(UTC)})
            tx.update(t.model_copy(update={"status": status}))
        ms, data = timed(tx.encode)
        figures.setdefault("update_encode_ms", []).append(ms)
        ms, res = timed(store.apply, 2 * r + 2, data)
        assert not isinstance(res, Exception), res
        figures.setdefault("update_apply_ms", []).append(ms)
        ms, res = timed(own.apply_local, 2 * r + 2, data, tx)
        assert not isinstance(res, Exception), res
        figures.setdefault("update_apply_local_ms", []).append(ms)
        assert own.snapshot() == store.snapshot()
        figures.setdefault("entry_kb", []).append(len(data) / 1024)
    emit({"bench": "apply", "tasks": a.tasks, "rounds": a.rounds, "commit": git_commit(),
          **{k: round(statistics.median(v), 2) for k, v in figures.items()}}, a.out)


if __name__ == "__main__":
    main()
