"""The manager-count curve (issue 13): what a 3rd, 5th, 7th, 9th manager costs.

    python bench/manager_curve.py --managers 1 3 5 7 9 [--seconds 8] [--out bench/managers.jsonl]
    python bench/manager_curve.py --plot bench/managers.jsonl      # -> bench/managers.png

For each count M, ONE JSON line ``"bench": "manager_curve"`` with:

- through the Docker API (real agent processes, the Docker SDK over TLS, as api_bench.py:
  C client threads each updating its own 0-replica service as fast as it can on the leader):
  ``api_writes_per_s``, ``api_p50_ms`` / ``api_p99_ms`` of the update call, which commits
  through Raft before it answers;
- through Raft directly (``raft_bench.py --client connection``: the KV state machine over RPC
  connections to the leader, separate member processes): ``raft_writes_per_s`` with 1,000
  writes in flight, and ``raft_commit_p50_ms`` / ``raft_commit_p99_ms`` with one in flight;
- ``failover_s``: SIGKILL of the leader agent (by PID) to the first service update that
  succeeds through another manager (M >= 3; the API answers 503 meanwhile), calls retried with
  a 1 s client timeout (a call forwarded to the dead leader just before the kill waits for
  its write's 5 s proposal timeout);
- ``rss_mb_mean`` / ``rss_mb_max``: resident memory of the manager agents after the load.

Each figure carries the 1-minute load average next to it (``load1``): the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, git_commit  # noqa: E402
from api_bench import _found, _load, _pct  # noqa: E402
from scale_bench import proc_rss_mb  # noqa: E402

from swarmkit_py.testing.agents import AgentCluster  # noqa: E402

HERE = Path(__file__).resolve().parent


def raft_figures(managers: int, seconds: float) -> dict:
    """raft_bench.py as a subprocess: throughput at W=1,000, commit latency at W=1."""
    out = {}
    for inflight, keys in ((1000, ("raft_writes_per_s",)), (1, ("raft_commit_p50_ms", "raft_commit_p99_ms"))):
        load1 = os.getloadavg()[0]
        r = subprocess.run([sys.executable, str(HERE / "raft_bench.py"), "--system", "swarmkit-py",
                            "--nodes", str(managers), "--seconds", str(seconds), "--inflight", str(inflight),
                            "--client", "connection"], capture_output=True, text=True, timeout=600)
        try:
            line = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out[f"raft_error_w{inflight}"] = (r.stderr or r.stdout)[-300:]
            continue
        vals = {"raft_writes_per_s": line.get("writes_per_s"), "raft_commit_p50_ms": line.get("p50_ms"),
                "raft_commit_p99_ms": line.get("p99_ms")}
        for k in keys:
            out[k] = vals[k]
        out[f"raft_load1_w{inflight}"] = round(load1, 2)
        out[f"raft_elections_w{inflight}"] = line.get("term_changes")
    return out


def leader_of(c: AgentCluster, managers) -> object:
    for m in managers:
        try:
            if c.metrics(m).get("swarmkit_raft_is_leader") == 1.0:
                return m
        except OSError:
            continue
    raise RuntimeError("no leader among the managers")


def failover(c: AgentCluster, managers, service_id: str, timeout: float = 60.0) -> float | None:
    """Kill the leader; time until an update through a surviving manager succeeds."""
    leader = leader_of(c, managers)
    other = next(m for m in managers if m is not leader)
    api = c.sdk(other).api
    # 1 s per call: a call that was forwarded to the dead leader waits for its write's whole
    # proposal timeout (5 s), which would measure that timeout, not the cluster's recovery
    api.timeout = 1
    c.kill(leader)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < timeout:
        i += 1
        try:
            svc = api.inspect_service(service_id)
            spec = svc["Spec"]
            api.update_service(service_id, svc["Version"]["Index"], task_template=spec["TaskTemplate"],
                               name=spec["Name"], labels={"failover": str(i)}, mode=spec["Mode"])
            return round(time.monotonic() - t0, 3)
        except Exception:  # noqa: BLE001 - 503 "no leader" until the election is over
            time.sleep(0.02)
    return None


def one(managers: int, args) -> dict:
    out: dict = {"bench": "manager_curve", "managers": managers, "commit": git_commit()}
    with tempfile.TemporaryDirectory(prefix="bench-mgrs-") as workdir:
        c = AgentCluster(workdir)
        c.start_timeout = 120.0  # agents start slowly on a loaded machine
        try:
            m1 = _found(c, managers)
            all_managers = [n for n in c.nodes.values()]
            sdk = c.sdk(m1)
            leader = leader_of(c, all_managers)
            services = [sdk.services.create("busybox:latest", name=f"curve-{i}", mode={"Replicated": {"Replicas": 0}}).id
                        for i in range(args.clients)]
            out["api_load1"] = round(os.getloadavg()[0], 2)
            r = _load(c, leader, services, args.seconds, 1.0)
            out.update(api_writes_per_s=round(r["updates"] / args.seconds, 1), api_p50_ms=_pct(r["lat"], 0.5),
                       api_p99_ms=_pct(r["lat"], 0.99), api_errors=r["errors"])
            rss = [proc_rss_mb(m.proc.pid) for m in all_managers]
            out.update(rss_mb_mean=round(sum(rss) / len(rss), 1), rss_mb_max=round(max(rss), 1))
            if managers >= 3:
                out["failover_load1"] = round(os.getloadavg()[0], 2)
                out["failover_s"] = failover(c, all_managers, services[0])
        finally:
            c.stop_all()
    if not args.skip_raft:
        out.update(raft_figures(managers, args.seconds))
    out["load1_end"] = round(os.getloadavg()[0], 2)
    return out


def plot(path: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {}
    for line in Path(path).read_text().splitlines():
        d = json.loads(line)
        if d.get("bench") == "manager_curve":
            rows[d["managers"]] = d  # the latest run per count
    ms = sorted(rows)
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))

    def series(key):
        return [rows[m].get(key) for m in ms]

    def line(a, key, label, **kw):
        pts = [(m, v) for m, v in zip(ms, series(key), strict=True) if v is not None]
        if pts:
            a.plot(*zip(*pts, strict=True), marker="o", label=label, **kw)

    line(ax[0][0], "api_writes_per_s", "Docker API service updates/s")
    line(ax[0][0], "raft_writes_per_s", "Raft KV writes/s (RPC client, W=1,000)")
    ax[0][0].set_yscale("log")
    ax[0][0].set_title("throughput")
    line(ax[0][1], "api_p50_ms", "API update p50")
    line(ax[0][1], "api_p99_ms", "API update p99", linestyle="--")
    line(ax[0][1], "raft_commit_p50_ms", "Raft commit p50 (W=1)")
    line(ax[0][1], "raft_commit_p99_ms", "Raft commit p99 (W=1)", linestyle="--")
    ax[0][1].set_yscale("log")
    ax[0][1].set_title("latency (ms)")
    line(ax[1][0], "failover_s", "leader SIGKILL -> first API write (s)")
    ax[1][0].set_title("failover (s)")
    line(ax[1][1], "rss_mb_mean", "RSS per manager, mean (MB)")
    line(ax[1][1], "rss_mb_max", "RSS per manager, max (MB)", linestyle="--")
    ax[1][1].set_title("memory per manager (MB)")
    for a in ax.flat:
        a.set_xlabel("managers")
        a.set_xticks(ms)
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    loads = sorted({rows[m].get("api_load1") for m in ms if rows[m].get("api_load1") is not None})
    fig.suptitle(f"swarmkit-py: cost of the manager count (2 vCPUs shared; load1 {loads[0]}-{loads[-1]})"
                 if loads else "swarmkit-py: cost of the manager count")
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--managers", type=int, nargs="+", default=[1, 3, 5, 7, 9])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--skip-raft", action="store_true", help="only the Docker API, failover and memory")
    ap.add_argument("--out")
    ap.add_argument("--plot", metavar="JSONL", help="plot the lines of this file instead of running")
    ap.add_argument("--png", default=str(HERE / "managers.png"))
    args = ap.parse_args()
    if args.plot:
        plot(args.plot, args.png)
        return
    for m in args.managers:
        try:
            line = one(m, args)
        except Exception as e:  # noqa: BLE001 - where a count fails is a result too
            line = {"bench": "manager_curve", "managers": m, "error": f"{type(e).__name__}: {e}"[:400],
                    "load1_end": round(os.getloadavg()[0], 2)}
        emit(line, args.out)


if __name__ == "__main__":
    main()
