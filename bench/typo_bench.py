"""The 100,000-replica typo (issue 13): how the API behaves while a huge service fills.

    python bench/typo_bench.py [--replicas 100000] [--nodes 20] [--seconds 60] [--out F]
                               [--profile manager.txt]

One real manager agent (drained) and N simulated workers (``testing/simnodes.py``); a service
with ``--replicas`` is created through the Docker API, then for ``--seconds`` one client calls
``service ls`` (with status, as the CLI does), ``node ls`` and ``service ps <typo>`` back to back
and records each latency, the tasks that exist and the tasks running on the nodes (and, in
``leader``, what its own /metrics say of that time: loop holds of 50 ms or more, API handler
times, Raft apply batches). Then the service is removed and the next ``service ls`` is
timed. Prints ONE JSON line (per-call
p50/p99/max, tasks created and running at the end, the leader's RSS and CPU, load average) and,
with ``--trace``, one line per probe round on stderr. ``--profile X.txt`` records the manager
with py-spy (raw collapsed stacks, 50 Hz, non-blocking) for the first 30 s after the create
(``bench/pyspy_top.py X.txt`` sums it; ``.svg`` for a flame graph).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, git_commit  # noqa: E402
from scale_bench import (  # noqa: E402
    Fleet,
    fill_figures,
    metrics_of,
    pct,
    proc_cpu_seconds,
    proc_rss_mb,
    start_spy,
    stop_spy,
)

from swarmkit_py.testing.agents import AgentCluster  # noqa: E402


def timed(fn) -> tuple[float, object]:
    t0 = time.monotonic()
    r = fn()
    return (time.monotonic() - t0) * 1000, r


def run(args) -> dict:
    base = Path(tempfile.mkdtemp(prefix="typo-bench-"))
    c = AgentCluster(base)
    fleet = spy = None
    out: dict = {"bench": "typo", "replicas": args.replicas, "nodes": args.nodes,
                 "seconds": args.seconds, "commit": git_commit(), "load1_start": os.getloadavg()[0]}
    try:
        m1 = c.add("m1")
        c.init(m1)
        c.start(m1)
        c.client_bundle(m1)
        sdk = c.sdk(m1)
        api = sdk.api
        api.timeout = 300
        mgr = sdk.nodes.list()[0]
        mgr.update({**mgr.attrs["Spec"], "Availability": "drain"})
        fleet = Fleet(m1.addr, sdk.swarm.attrs["JoinTokens"]["Worker"], args.nodes, c.env, base / "sim.log")
        fleet.wait(lambda s: s.get("connected") == args.nodes, 120, "every node connected")
        cpu0, t0 = proc_cpu_seconds(m1.proc.pid), time.monotonic()
        m0 = metrics_of(c, m1)
        api.create_service({"ContainerSpec": {"Image": "busybox", "Args": ["sleep", "1d"]}},
                           name="typo", mode={"Replicated": {"Replicas": args.replicas}})
        if args.profile:
            spy = start_spy(m1, args.profile, min(30.0, args.seconds))
        lat: dict[str, list[float]] = {"service ls": [], "node ls": [], "service ps": []}
        tasks = 0
        while time.monotonic() - t0 < args.seconds:
            ms, _ = timed(lambda: api.get(api._url("/services"), params={"status": "true"}).json())
            lat["service ls"].append(ms)
            ms, _ = timed(api.nodes)
            lat["node ls"].append(ms)
            ms, listed = timed(lambda: api.tasks(filters={"service": "typo"}))
            lat["service ps"].append(ms)
            tasks = len(listed)
            if args.trace:
                print(f"t={time.monotonic() - t0:5.1f}s ls={lat['service ls'][-1]:.0f}ms "
                      f"node_ls={lat['node ls'][-1]:.0f}ms ps={ms:.0f}ms tasks={tasks} "
                      f"running={fleet.status.get('running')} rss={proc_rss_mb(m1.proc.pid):.0f}MB",
                      file=sys.stderr, flush=True)
            time.sleep(0.5)
        span = time.monotonic() - t0
        # what held the leader's loop meanwhile, and how long its API handlers took
        out["leader"] = fill_figures(m0, metrics_of(c, m1), span)
        out["leader_cpu_pct"] = round(100 * (proc_cpu_seconds(m1.proc.pid) - cpu0) / span, 1)
        out["leader_rss_mb"] = round(proc_rss_mb(m1.proc.pid), 1)
        out["tasks_listed_at_end"] = tasks
        out["tasks_running_on_nodes_at_end"] = fleet.status.get("running")
        for name, v in lat.items():
            key = name.replace(" ", "_")
            out[f"{key}_p50_ms"] = round(pct(v, 0.5), 1)
            out[f"{key}_p99_ms"] = round(pct(v, 0.99), 1)
            out[f"{key}_max_ms"] = round(max(v), 1)
        out["service_rm_ms"] = round(timed(lambda: api.remove_service("typo"))[0], 1)
        out["service_ls_after_rm_ms"] = round(timed(api.services)[0], 1)
        m = c.metrics(m1)
        out["nodes_declared_down"] = m.get("swarmkit_dispatcher_nodes_declared_down_total")
    finally:
        out["load1_end"] = os.getloadavg()[0]
        stop_spy(spy)
        if fleet is not None:
            fleet.stop()
        c.stop_all()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=100_000)
    p.add_argument("--nodes", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--trace", action="store_true")
    p.add_argument("--out")
    p.add_argument("--profile", help="py-spy profile of the manager over the first 30 s after the create "
                   "(.txt: raw collapsed stacks for bench/pyspy_top.py; .svg: a flame graph)")
    args = p.parse_args()
    emit(run(args), args.out)


if __name__ == "__main__":
    main()
