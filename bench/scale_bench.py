"""Scale: N simulated nodes, M real managers, T tasks, on loopback. Prints ONE JSON line.

    python bench/scale_bench.py --nodes N --managers M --tasks T [--services S] [--out F]
                                [--profile leader.svg] [--skip-failover]

What runs: M real manager agent processes (``swarmkit-py agent``, founded with ``init`` and
``join`` like an operator would, all drained so tasks go to workers only) and one process of N
simulated workers (``python -m swarmkit_py.testing.simnodes``: the real join, mutual-TLS
dispatcher session, heartbeats and task reports, with a fake executor). Everything is driven
through the Docker API with the Docker SDK over TLS and a client bundle.

Figures (keys of the JSON line):
- ``all_joined_s``: from starting the fleet to every simulated node holding a session (the
  fleet's own count), confirmed by ``node ls`` showing N+M Ready;
- ``all_running_s``: from the first ``service create`` (T replicas over S services) to every
  task Running as the API reports it (``tasks?desired-state=running`` with state running);
- ``api_p50_ms`` / ``api_p99_ms``: ``node ls``, ``service ls`` and ``service ps <one>`` issued
  back to back by one client from the first create to the end of the steady window (so they
  include the convergence), also split into ``api_converge_p99_ms`` and ``api_steady_p99_ms``
  and per call (``api_ms``); ``api_converge_p90_ms`` and ``api_converge_over_360ms`` (of
  ``api_converge_samples``) say whether a slow fill is a few long holds or every call slow; every
  sample (time from the create, call, ms) is written to ``api_samples.json`` in the work dir;
  ``api_via`` names the manager they went to and its role when the fill started (``--api-via``
  chooses it), and ``fill_api_via`` has that manager's figures, as ``fill_leader``'s, when it
  was a follower;
- ``fill_leader``: the leader's own ``/metrics`` over the fill (create to all Running): event
  loop holds of 50 ms or more (``loop_held``: count, total, ``share`` of the fill), the API
  handlers' times, linearizable reads' waits (``read_index``: the confirmation round plus
  apply, when asked on the manager's loop; ``api_read_barrier``: the same wait of the API's
  reads on its front thread), Raft apply time per batch, full garbage collections; ``leader_loop`` its loop watch
  at the end of the steady window (``loop_stalls`` has the managers that survive the failover);
- ``leader_cpu_pct`` / ``leader_rss_mb``: the leader process over the steady window (/proc);
- ``heartbeats_per_s``: the leader's /metrics counter over that window;
- ``raft_entries_per_s``: Raft entries committed per second from the first create to all
  Running (commit index delta: task creations, assignments, status reports), their number in
  ``raft_entries_converge``; ``raft_entries_steady_per_s`` the same over the steady window
  (near 0: a converged cluster writes only on change, heartbeats are not logged);
- ``loop_stalls``: per manager, the longest hold of its event loop and the count of turns held
  past 0.25 s (``/metrics``, the agent's loop watch; its log says where each long hold was);
- failover (M >= 3): SIGKILL the leader (by PID), then ``failover_sessions_back_s`` until every
  simulated node has opened a new session, ``failover_nodes_marked_down`` nodes other than the
  killed one seen Down by the new leader at any poll within ``--failover-watch`` s,
  ``failover_tasks_moved`` tasks desired running before the kill that are not any more.

Only processes started here are signalled, by PID. Load average is recorded with each run
(``load1``): on a shared machine the figures depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, git_commit  # noqa: E402

from swarmkit_py.testing.agents import AgentCluster  # noqa: E402


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Fleet:
    """The simulated nodes' process; its JSON status lines are read by a thread."""

    def __init__(self, manager: str, token: str, count: int, env: dict, log: Path) -> None:
        cmd = [sys.executable, "-m", "swarmkit_py.testing.simnodes", "--manager", manager,
               "--token", token, "--count", str(count), "--status-interval", "0.2"]
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL, env=env, text=True)
        self.status: dict = {}
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                st = json.loads(line)
            except ValueError:
                continue
            self.status = st
            if st.get("event") == "error":
                self.lines.put(st)

    def wait(self, cond, timeout: float, what: str) -> float:
        t0 = time.monotonic()
        said = t0
        while time.monotonic() - t0 < timeout:
            if time.monotonic() - said > 15:
                said = time.monotonic()
                say(f"waiting for {what}: " + ", ".join(f"{k} {self.status.get(k)}" for k in
                    ("joined", "connected", "running", "sessions_opened", "failed_rounds",
                     "slow_heartbeats", "loop_lag_max_s")))
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulated nodes exited ({self.proc.returncode}): {self.status}")
            if cond(self.status):
                return time.monotonic() - t0
            time.sleep(0.05)
        raise TimeoutError(f"{what} within {timeout}s; last fleet status {self.status}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Prober(threading.Thread):
    """``node ls``, ``service ls``, ``service ps <svc>`` back to back, latencies recorded."""

    def __init__(self, api, service: str) -> None:
        super().__init__(daemon=True)
        self.api, self.service = api, service
        self.samples: list[tuple[float, str, float]] = []  # (when, call, ms)
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        calls = [("node ls", lambda: self.api.nodes()),
                 ("service ls", lambda: self.api.services()),
                 ("service ps", lambda: self.api.tasks(filters={"service": self.service}))]
        while not self.halt.is_set():
            for name, fn in calls:
                t0 = time.monotonic()
                try:
                    fn()
                except Exception:  # noqa: BLE001 - counted; a failover makes some fail
                    self.errors += 1
                    time.sleep(0.1)
                    continue
                self.samples.append((t0, name, (time.monotonic() - t0) * 1000))
            time.sleep(0.05)

    def between(self, a: float, b: float) -> list[float]:
        return [ms for t, _, ms in self.samples if a <= t < b]


def say(msg: str) -> None:
    print(f"[scale_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def retrying(fn, what: str, attempts: int = 20):
    """An API write retried while the swarm has no leader (an election on a loaded machine:
    503) - the figure is the time to converge, elections included."""
    import docker.errors

    for i in range(attempts):
        try:
            return fn()
        except docker.errors.APIError as e:
            if e.status_code != 503 or i == attempts - 1:
                raise
            say(f"{what}: {e.explanation}; retrying")
            time.sleep(0.5)


def metrics_of(c: AgentCluster, n) -> dict:
    try:
        return c.metrics(n)
    except Exception:  # noqa: BLE001
        return {}


def leader_of(c: AgentCluster, managers) -> object | None:
    for n in managers:
        if n.alive and metrics_of(c, n).get("swarmkit_raft_is_leader") == 1.0:
            return n
    return None


def metric(m: dict, name: str) -> float:
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def max_commit(c: AgentCluster, managers) -> float:
    return max(metric(metrics_of(c, m), "swarmkit_raft_commit_index") for m in managers if m.alive)


def loop_stalls(c: AgentCluster, managers) -> dict:
    """Per manager still running: the longest hold of its event loop and how many turns
    were held longer than Raft's shortest election timeout (the agent's loop watch)."""
    out = {}
    for m in managers:
        mt = metrics_of(c, m) if m.alive else {}
        if mt:
            out[m.name] = {"max_s": round(mt.get("swarmkit_event_loop_stall_max_seconds", 0), 2),
                           "over_0.25s": int(mt.get("swarmkit_event_loop_stall_seconds_count", 0)
                                             - mt.get('swarmkit_event_loop_stall_seconds_bucket{le="0.25"}', 0)),
                           "gc_full": int(mt.get("swarmkit_gc_full_collections_total", 0)),
                           "gc_full_s": round(mt.get("swarmkit_gc_full_collection_seconds_total", 0), 2),
                           "terms": int(mt.get("swarmkit_raft_term", 0))}
    return out


def hist_delta(m0: dict, m1: dict, name: str, over: float = 0.25) -> dict:
    """One /metrics histogram between two scrapes: observations, their mean, and how many
    took longer than `over` seconds."""
    full = f"swarmkit_{name}"
    n = m1.get(f"{full}_count", 0) - m0.get(f"{full}_count", 0)
    total = m1.get(f"{full}_sum", 0) - m0.get(f"{full}_sum", 0)
    le = f'{full}_bucket{{le="{over:g}"}}'
    within = m1.get(le, 0) - m0.get(le, 0)
    return {"n": int(n), "mean_ms": round(1000 * total / n, 1) if n else None,
            "sum_s": round(total, 2), f"over_{over:g}s": int(n - within)}


def fill_figures(m0: dict, m1: dict, span: float) -> dict:
    """What the leader's loop and its reads did during the fill (between two scrapes of its
    /metrics): holds of the loop of 50 ms or more (and the share of the fill they took), the
    API's handler times, linearizable reads' waits, Raft apply time, full collections."""
    held = hist_delta(m0, m1, "event_loop_stall_seconds")
    return {"loop_held": {**held, "share": round(held["sum_s"] / span, 2) if span else None},
            "api_requests": hist_delta(m0, m1, "api_request_seconds"),
            "read_index": hist_delta(m0, m1, "raft_read_index_seconds"),
            "api_read_barrier": hist_delta(m0, m1, "api_read_barrier_seconds"),
            "api_read_lane": {f"{r}_{o}": int(m1.get(f'swarmkit_api_read_lane_total{{role="{r}",outcome="{o}"}}', 0)
                                              - m0.get(f'swarmkit_api_read_lane_total{{role="{r}",outcome="{o}"}}', 0))
                              for r in ("leader", "follower") for o in ("confirmed", "declined")},
            "raft_apply": hist_delta(m0, m1, "raft_apply_seconds", over=0.1),
            "gc_full": int(m1.get("swarmkit_gc_full_collections_total", 0)
                           - m0.get("swarmkit_gc_full_collections_total", 0)),
            "gc_full_s": round(m1.get("swarmkit_gc_full_collection_seconds_total", 0)
                               - m0.get("swarmkit_gc_full_collection_seconds_total", 0), 2),
            "loop_max_s": round(m1.get("swarmkit_event_loop_stall_max_seconds", 0), 2)}


def running_count(api) -> int:
    """Tasks Running in the API, as `docker service ls` counts them (REPLICAS): one small
    answer. Listing all 10,000 tasks once a second instead (`running_ids`, until round 10)
    made each poll a multi-megabyte render on the leader's API thread, under the store's
    commit lock, and a JSON decode in this process, beside the Prober's thread: load of the
    harness's own in the last seconds of the fill it measures."""
    return sum(s.get("ServiceStatus", {}).get("RunningTasks", 0) for s in api.services(status=True))


def running_ids(api) -> set[str]:
    return {t["ID"] for t in api.tasks(filters={"desired-state": "running"})
            if t["Status"]["State"] == "running"}


def run(args) -> dict:
    base = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    env_extra = {}
    c = AgentCluster(base, env=env_extra)
    fleet = None
    prober = None
    conv_spy = None
    managers: list = []
    say(f"work dir (agent logs) {base}")
    out: dict = {"bench": "scale", "nodes": args.nodes, "managers": args.managers,
                 "tasks": args.tasks, "commit": git_commit(), "load1_start": os.getloadavg()[0]}
    try:
        managers = [c.add(f"m{i + 1}") for i in range(args.managers)]
        m1 = managers[0]
        c.init(m1)
        c.start(m1)
        c.client_bundle(m1)
        sdk = c.sdk(m1)
        sdk.api.timeout = 60
        tokens = sdk.swarm.attrs["JoinTokens"]
        for m in managers[1:]:
            c.join(m, tokens["Manager"], m1)
            c.start(m)
        c.wait_for(lambda: sum(n["Status"]["State"] == "ready" for n in sdk.api.nodes()) == args.managers,
                   120, "managers Ready")
        for n in sdk.nodes.list():
            n.update({**n.attrs["Spec"], "Availability": "drain"})

        say(f"{args.managers} managers up; starting {args.nodes} simulated nodes")
        t0 = time.monotonic()
        fleet = Fleet(m1.addr, tokens["Worker"], args.nodes, c.env, base / "simnodes.log")
        fleet.wait(lambda s: s.get("connected") == args.nodes, args.timeout, "every node connected")
        c.wait_for(lambda: sum(n["Status"]["State"] == "ready" for n in sdk.api.nodes())
                   == args.nodes + args.managers, args.timeout, "every node Ready", interval=0.5)
        out["all_joined_s"] = round(time.monotonic() - t0, 2)

        say(f"all joined in {out['all_joined_s']} s; creating {args.tasks} tasks")
        services = max(1, min(args.services, args.tasks))
        per = [args.tasks // services + (1 if i < args.tasks % services else 0) for i in range(services)]
        commit0 = max_commit(c, managers)
        fill_leader = leader_of(c, managers) or m1
        fill_m0 = metrics_of(c, fill_leader)
        via = {"m1": m1, "leader": fill_leader}.get(args.api_via) or next(
            (m for m in managers if m is not fill_leader), m1)
        via_m0 = metrics_of(c, via)
        probe_api = c.sdk(via).api
        probe_api.timeout = 60
        prober = Prober(probe_api, "svc0")
        if args.profile and args.profile_phase == "converge":
            conv_spy = start_spy(leader_of(c, managers) or m1, args.profile, None)
        t_create = time.monotonic()
        for i, replicas in enumerate(per):
            retrying(lambda i=i, r=replicas: sdk.api.create_service(
                {"ContainerSpec": {"Image": "busybox", "Args": ["sleep", "1d"]}},
                name=f"svc{i}", mode={"Replicated": {"Replicas": r}}), f"create svc{i}")
            if i == 0:
                prober.start()
        fleet.wait(lambda s: s.get("running", 0) >= args.tasks, args.timeout, "every task running on its node")
        c.wait_for(lambda: running_count(sdk.api) >= args.tasks, args.timeout,
                   "every task Running in the API", interval=1.0)
        t_running = time.monotonic()
        out["all_running_s"] = round(t_running - t_create, 2)
        out["fill_leader"] = {"name": fill_leader.name,
                              **fill_figures(fill_m0, metrics_of(c, fill_leader), t_running - t_create)}
        out["api_via"] = {"name": via.name, "role": "leader" if via is fill_leader else "follower"}
        if via is not fill_leader:
            out["fill_api_via"] = fill_figures(via_m0, metrics_of(c, via), t_running - t_create)
        conv_spy = stop_spy(conv_spy)
        # the writes of the convergence: task creations, assignments, status reports
        out["raft_entries_converge"] = int(max_commit(c, managers) - commit0)
        out["raft_entries_per_s"] = round(out["raft_entries_converge"] / (t_running - t_create), 1)

        say(f"all running in {out['all_running_s']} s; steady window {args.steady} s")
        # steady state
        leader = leader_of(c, managers) or m1
        mt0, cpu0, s0 = metrics_of(c, leader), proc_cpu_seconds(leader.proc.pid), time.monotonic()
        spy = None
        if args.profile and args.profile_phase == "steady":
            spy = start_spy(leader, args.profile, args.steady)
        time.sleep(args.steady)
        mt1, cpu1, s1 = metrics_of(c, leader), proc_cpu_seconds(leader.proc.pid), time.monotonic()
        if spy is not None:
            spy.wait(60)
        span = s1 - s0
        out["leader_cpu_pct"] = round(100 * (cpu1 - cpu0) / span, 1)
        out["leader_rss_mb"] = round(proc_rss_mb(leader.proc.pid), 1)
        out["heartbeats_per_s"] = round((metric(mt1, "swarmkit_dispatcher_heartbeats_total")
                                         - metric(mt0, "swarmkit_dispatcher_heartbeats_total")) / span, 1)
        out["raft_entries_steady_per_s"] = round((metric(mt1, "swarmkit_raft_commit_index")
                                                  - metric(mt0, "swarmkit_raft_commit_index")) / span, 1)
        prober.halt.set()
        prober.join(30)
        conv, steady = prober.between(t_create, t_running), prober.between(t_running, s1)
        (base / "api_samples.json").write_text(json.dumps(
            [(round(t - t_create, 3), name, round(ms, 1)) for t, name, ms in prober.samples]))
        allms = conv + steady
        out["api_p50_ms"] = round(pct(allms, 0.5) or 0, 1)
        out["api_p99_ms"] = round(pct(allms, 0.99) or 0, 1)
        out["api_converge_p99_ms"] = round(pct(conv, 0.99) or 0, 1)
        out["api_converge_p90_ms"] = round(pct(conv, 0.9) or 0, 1)
        out["api_converge_over_360ms"] = sum(ms > 360 for ms in conv)
        out["api_converge_samples"] = len(conv)
        out["api_steady_p99_ms"] = round(pct(steady, 0.99) or 0, 1)
        out["api_samples"] = len(allms)
        out["api_ms"] = {name: {"p50": round(pct(v, 0.5), 1), "p99": round(pct(v, 0.99), 1)}
                         for name in ("node ls", "service ls", "service ps")
                         if (v := [ms for _, n, ms in prober.samples if n == name])}
        out["heartbeat_period_s"] = metric(mt1, "swarmkit_dispatcher_heartbeat_period_seconds")
        out["down_detection_s"] = round(3 * out["heartbeat_period_s"], 1)  # the grace: 3 periods
        out["fleet"] = {k: fleet.status.get(k) for k in ("heartbeats", "sessions_opened", "failed_rounds",
                                                          "slow_heartbeats", "loop_lag_max_s")}

        out.update(failover_nodes_marked_down=None, failover_tasks_moved=None,
                   failover_sessions_back_s=None)
        out["leader_loop"] = loop_stalls(c, [leader]).get(leader.name)  # the failover kills it
        if args.managers >= 3 and not args.skip_failover:
            say("failover: killing the leader")
            out.update(failover(c, managers, leader, fleet, sdk, args))
    except (TimeoutError, AssertionError, RuntimeError, KeyboardInterrupt) as e:
        # where it breaks is a result too: the line says how far it got
        out["error"] = (str(e) or type(e).__name__)[:500]
        out["fleet_at_error"] = {k: fleet.status.get(k) for k in
                                 ("connected", "running", "sessions_opened", "failed_rounds",
                                  "slow_heartbeats", "loop_lag_max_s")} if fleet else None
        out["leader_terms"] = max((metric(metrics_of(c, m), "swarmkit_raft_term") for m in c.nodes.values()),
                                  default=None)
    finally:
        stop_spy(conv_spy)  # a run that broke during the fill: its profile is the interesting one
        out["loop_stalls"] = loop_stalls(c, managers) if managers else None
        out["load1_end"] = os.getloadavg()[0]
        if prober is not None:
            prober.halt.set()
        if fleet is not None:
            fleet.stop()
        c.stop_all()
    return out


def failover(c: AgentCluster, managers, leader, fleet: Fleet, sdk, args) -> dict:
    before = running_ids(sdk.api)
    opened0 = fleet.status.get("sessions_opened", 0)
    via0 = fleet.status.get("sessions_via_standby", 0)
    killed_id = leader.node_state()["node_id"]
    c.kill(leader)
    t_kill = time.monotonic()
    survivors = [m for m in managers if m is not leader]
    down: set[str] = set()
    back_s = leader_down_s = None
    new_api = None
    # long enough to see the dead leader's host declared Down (three periods after its last
    # Raft word): the down-detection time at this cluster size, measured
    watch = max(args.failover_watch, 3 * fleet_period(c, survivors) + 10)
    while time.monotonic() - t_kill < watch or back_s is None:
        if time.monotonic() - t_kill > args.timeout:
            break
        st = fleet.status
        if back_s is None and st.get("sessions_opened", 0) >= opened0 + args.nodes \
                and st.get("connected") == args.nodes:
            back_s = round(time.monotonic() - t_kill, 2)
        if new_api is None:
            nl = leader_of(c, survivors)
            if nl is not None:
                new_api = c.sdk(nl).api
                new_api.timeout = 30
        if new_api is not None:
            try:
                nodes = new_api.nodes()
                down |= {n["ID"] for n in nodes if n["Status"]["State"] == "down" and n["ID"] != killed_id}
                if leader_down_s is None and any(n["ID"] == killed_id and n["Status"]["State"] == "down"
                                                 for n in nodes):
                    leader_down_s = round(time.monotonic() - t_kill, 2)
            except Exception:  # noqa: BLE001 - the new leader may still be settling
                pass
        time.sleep(0.5)
    after = running_ids(new_api) if new_api is not None else set()
    return {"failover_nodes_marked_down": len(down), "failover_tasks_moved": len(before - after),
            "failover_sessions_back_s": back_s, "failover_dead_leader_down_s": leader_down_s,
            # sessions re-opened over the standby's connection (no TLS handshake)
            "failover_sessions_via_standby": fleet.status.get("sessions_via_standby", 0) - via0}


def start_spy(node, path: str, seconds: float | None) -> subprocess.Popen:
    """py-spy on a manager's process (for ``seconds``, or until SIGINT): a .svg flame graph,
    or py-spy's raw collapsed stacks for a .txt path (``bench/pyspy_top.py`` sums those)."""
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    fmt = ["-f", "raw"] if path.endswith(".txt") else []
    dur = ["-d", str(int(seconds))] if seconds else []
    return subprocess.Popen([pyspy, "record", "-o", path, *dur, "-r", "50", "-p", str(node.proc.pid),
                             "--nonblocking", *fmt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_spy(spy: subprocess.Popen | None) -> None:
    if spy is not None and spy.poll() is None:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
    return None


def fleet_period(c: AgentCluster, managers) -> float:
    """The period the (new) leader hands out; followers report the configured base."""
    return max([metric(metrics_of(c, n), "swarmkit_dispatcher_heartbeat_period_seconds")
                for n in managers] + [1.0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--managers", type=int, default=3)
    p.add_argument("--tasks", type=int, required=True)
    p.add_argument("--services", type=int, default=10, help="spread the tasks over this many services")
    p.add_argument("--steady", type=float, default=20.0, help="seconds of steady-state measurement")
    p.add_argument("--failover-watch", type=float, default=15.0,
                   help="seconds after the kill during which Down nodes are looked for")
    p.add_argument("--skip-failover", action="store_true")
    p.add_argument("--api-via", choices=("m1", "leader", "follower"), default="m1",
                   help="the manager the latency prober's reads go to: m1 (the founder, whichever role "
                        "it has when the fill starts), the leader then, or a follower then")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--profile", help="py-spy profile of the leader over the steady window "
                   "(a .svg flame graph, or .txt for py-spy's raw collapsed stacks)")
    p.add_argument("--profile-phase", choices=("steady", "converge"), default="steady",
                   help="profile the steady window (default) or from the first create to all Running")
    p.add_argument("--out", help="append the JSON line (with date) to this JSONL file")
    args = p.parse_args()
    if args.nodes < 1 or args.tasks < 1 or args.managers < 1:
        p.error("--nodes, --tasks and --managers must be at least 1")
    emit(run(args), args.out)


if __name__ == "__main__":
    main()
