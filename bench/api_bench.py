"""Service updates through the Docker API: what a user's `docker service update` costs.

    python bench/api_bench.py [--managers 1|3|5] [--services 20] [--seconds 10] [--clients 20] [--out F]
                              [--profile leader.txt]

Real agent processes (`swarmkit-py agent`, founded and joined with the CLI, managers promoted
with `docker node promote`), the Docker SDK over TLS with a client bundle, on the leader's API
port. Each of C client threads owns one service (0 replicas, so no containers: the figure is
the control plane's) and loops: inspect it (`GET /services/{id}`, for its version), then
`POST /services/{id}/update` with a new label, which commits through Raft before it answers.
Counted over --seconds after a 1 s warm-up: updates/s, and p50/p99 of the update call alone.
The CPU of the leader and of the client process over that window says which of the two bounds
the rate (`leader_cpu_pct`, `client_cpu_pct`). Ten `docker service update --label-add` runs of the real CLI (one process each) give the
latency a user sees at the prompt, process start included.

`--profile X.txt` records the leader with py-spy over the counted window (raw collapsed stacks,
summed by `bench/pyspy_top.py`; an .svg path gives a flame graph). Prints ONE JSON line (with
the load average at the start: the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, git_commit, source_id  # noqa: E402

from swarmkit_py.testing.agents import AgentCluster  # noqa: E402


def _pct(xs: list[float], q: float) -> float | None:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2) if xs else None


def _found(c: AgentCluster, managers: int):
    m1 = c.first_manager()
    if managers > 1:
        token = c.docker(m1, "swarm", "join-token", "-q", "manager").stdout.strip()
        for i in range(2, managers + 1):
            m = c.add(f"m{i}")
            c.join(m, token, m1)
            c.start(m)
        c.wait_for(lambda: len(c.docker(m1, "node", "ls", "-q").stdout.split()) == managers, 60, "every manager joined")
    return m1


def _load(c: AgentCluster, m1, services: list[str], seconds: float, warmup: float,
          profile: str | None = None) -> dict:
    t_measure = time.monotonic() + warmup
    t_end = t_measure + seconds
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(sid: str) -> None:
        api = c.sdk(m1).api
        i = 0
        while time.monotonic() < t_end:
            i += 1
            try:
                svc = api.inspect_service(sid)
                spec = svc["Spec"]
                t0 = time.monotonic()
                api.update_service(sid, svc["Version"]["Index"], task_template=spec["TaskTemplate"],
                                   name=spec["Name"], labels={"round": str(i)}, mode=spec["Mode"])
                t1 = time.monotonic()
            except Exception as e:  # a conflict or a timeout is a finding: counted and shown
                with lock:
                    errors.append(f"{type(e).__name__}: {e}"[:200])
                continue
            if t_measure <= t1 <= t_end:
                with lock:
                    lat.append((t1 - t0) * 1000)

    threads = [threading.Thread(target=worker, args=(sid,)) for sid in services]
    from scale_bench import proc_cpu_seconds, start_spy

    for t in threads:
        t.start()
    # CPU over the counted window, of the leader and of this client process (its 20 threads
    # share one GIL): which of the two bounds the rate
    time.sleep(max(0.0, t_measure - time.monotonic()))
    cpu0 = proc_cpu_seconds(m1.proc.pid), proc_cpu_seconds(os.getpid())
    if profile:
        start_spy(m1, profile, seconds).wait(seconds + 60)
    else:
        time.sleep(max(0.0, t_end - time.monotonic()))
    cpu1 = proc_cpu_seconds(m1.proc.pid), proc_cpu_seconds(os.getpid())
    for t in threads:
        t.join()
    return {"updates": len(lat), "errors": len(errors), "first_errors": errors[:3], "lat": lat,
            "leader_cpu_pct": round(100 * (cpu1[0] - cpu0[0]) / seconds, 1),
            "client_cpu_pct": round(100 * (cpu1[1] - cpu0[1]) / seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--managers", type=int, default=1)
    ap.add_argument("--clients", type=int, default=20, help="client threads, one service each")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--cli-samples", type=int, default=10)
    ap.add_argument("--out")
    ap.add_argument("--profile", help="py-spy the leader over the counted window into this file (.txt: raw)")
    args = ap.parse_args(argv)
    args.profile = os.path.abspath(args.profile) if args.profile else None
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-api-") as workdir:
        c = AgentCluster(workdir)
        try:
            m1 = _found(c, args.managers)
            sdk = c.sdk(m1)
            services = [sdk.services.create("busybox:latest", name=f"bench-{i}", mode={"Replicated": {"Replicas": 0}}).id
                        for i in range(args.clients)]
            r = _load(c, m1, services, args.seconds, args.warmup, args.profile)
            cli = []
            for i in range(args.cli_samples):
                t0 = time.monotonic()
                c.docker(m1, "service", "update", "--detach", "--label-add", f"cli={i}", "bench-0")
                cli.append((time.monotonic() - t0) * 1000)
        finally:
            c.stop_all()
    emit({
        "bench": "api_service_update",
        "managers": args.managers,
        "clients": args.clients,
        "updates_per_s": round(r["updates"] / args.seconds, 1),
        "update_p50_ms": _pct(r["lat"], 0.5),
        "update_p99_ms": _pct(r["lat"], 0.99),
        "errors": r["errors"],
        "first_errors": r["first_errors"],
        "leader_cpu_pct": r["leader_cpu_pct"],
        "client_cpu_pct": r["client_cpu_pct"],
        "cli_update_p50_ms": round(statistics.median(cli), 1) if cli else None,
        "cli_update_max_ms": round(max(cli), 1) if cli else None,
        "seconds": args.seconds,
        "loadavg_1m_at_start": round(load0, 2),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "commit": git_commit(),
        **source_id(),
    }, args.out)


if __name__ == "__main__":
    sys.exit(main())
