"""The lab half of reschedule_bench.py (`--lab`): power cuts of real lab hosts, one Docker engine
per host, the cluster formed and driven the way an operator does it.

Why a lab figure at all: the loopback benchmark kills agent processes, whose sockets close, so
every peer hears RST at once. A power cut (the lab's `crash`: the host's veth goes down, then
every process of the host dies) leaves peers with silent connections, which is what hid the
bug of issue 10 (live nodes marked Down after the leader's host died). This is the reference
figure.

Layouts (`--layout`):
- `readme`: 7 hosts, `invoke bootstrap --managers 5` (the README's demo, scripts/demo.sh).
- `seed`: 5 hosts, `invoke bootstrap --managers 1`, the service created, then the two
  task-less workers promoted (`invoke promote`): 3 managers, 2 task-holding workers.

Per trial, on one lab kept for the whole run:
1. every host up and every node Ready (the previous victim was booted again, its agent
   re-joined by its own autostart);
2. the service `bench` (3 x `sleep`, the lab's local busybox image) removed and created again,
   so the spread scheduler places a task on the host that just came back; 3 Running;
3. the victim: `leader` - the leader's host, which must hold a task: if it does not,
   leadership is moved to a manager that holds one (`POST /swarm/leader`, what `invoke leader`
   calls), then the cluster settles; `worker` - a non-leader host holding a task, a worker if
   one holds a task (a follower manager otherwise, recorded);
4. `--settle` seconds of quiet (every worker's session on the current leader), then the clock
   starts and `Lab.crash(victim)` cuts its power;
5. a surviving manager's Docker API is polled every 100 ms: the sample is the first poll with 3
   tasks Running on survivors; polling continues until kill + 8 s and sample + 3 s. Every task
   that ran on a survivor before the cut must still run (healthy_tasks_moved), and no survivor
   may ever be shown anything but `ready` (live_nodes_not_ready: each (node, state) seen);
6. the victim is booted again (`Lab.restart`) and must be Ready again before the next trial.

Load average is recorded with every trial: the machine is shared, timings on a loaded 2-core
box are pessimistic.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVOKE = str(ROOT / ".venv" / "bin" / "invoke")
SERVICE = "bench"
REPLICAS = 3
IMAGE = "swarmkit-py/busybox:latest"
POLL_S = 0.1
MIN_WATCH_S = 8.0
GIVE_UP_S = 60.0
LAYOUTS = {"readme": (7, 5), "seed": (5, 3)}


def _log(msg: str) -> None:
    print(f"[reschedule_bench lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _load() -> float:
    return os.getloadavg()[0]


class LabCluster:
    def __init__(self, name: str, layout: str):
        from swarmkit_py.deploy.lab import Lab

        self.layout = layout
        self.hosts, self.managers = LAYOUTS[layout]
        self.lab = Lab(name)
        self.inventory = self.lab.inventory_path
        self._clients: dict[str, object] = {}

    # -- operator commands ---------------------------------------------------------------
    def invoke(self, *args: str, timeout: float = 600) -> str:
        r = subprocess.run([INVOKE, *args, "--inventory", str(self.inventory)], cwd=ROOT, capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"invoke {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r.stdout

    def client(self, host: str):
        c = self._clients.get(host)
        if c is None:
            from swarmkit_py.deploy import api
            from swarmkit_py.deploy.inventory import load

            inv = load(self.inventory)
            c = api.client(inv.host(host), api.bundle_dir(inv), timeout=2)
            self._clients[host] = c
        return c

    def drop_client(self, host: str) -> None:
        c = self._clients.pop(host, None)
        if c is not None:
            c.close()

    def close(self) -> None:
        for h in list(self._clients):
            self.drop_client(h)

    # -- building ------------------------------------------------------------------------
    def build(self, fresh: bool) -> None:
        lab = self.lab
        running = [h.name for h in lab.hosts() if h.state == "running"] if lab._config() else []
        if fresh or len(running) != self.hosts:
            _log(f"lab {lab.name}: {self.hosts} hosts from scratch")
            lab.down()
            lab.up(self.hosts, docker=True)
        t0 = time.monotonic()
        if self.layout == "readme":
            self.invoke("bootstrap", "--managers", str(self.managers))
            self.invoke("docker-env")  # fetches the client bundle
        else:
            self.invoke("bootstrap", "--managers", "1")
            self.invoke("docker-env")
            if not self._service_tasks():
                self.create_service()
            holders = {self.name_of(t["NodeID"]) for t in self._service_tasks()}
            nodes = self.nodes()
            workers = sorted(self.name_of(n["ID"]) for n in nodes if not n.get("ManagerStatus"))
            promote = ([w for w in workers if w not in holders] + [w for w in workers if w in holders])
            have = sum(1 for n in nodes if n.get("ManagerStatus"))
            for w in promote[: max(0, self.managers - have)]:
                self.invoke("promote", w)
        _log(f"cluster formed in {time.monotonic() - t0:.1f}s")

    # -- views ---------------------------------------------------------------------------
    def nodes_via_any(self, avoid: set[str] = frozenset()) -> list[dict]:
        names = [f"h{i}" for i in range(1, self.hosts + 1) if f"h{i}" not in avoid]
        last = None
        for h in names:
            try:
                ns = self.client(h).api.nodes()
                self._via = h
                return ns
            except Exception as e:  # not a manager, or down
                last = e
                self.drop_client(h)
        raise RuntimeError(f"no manager answers: {last}")

    def nodes(self) -> list[dict]:
        ns = self.nodes_via_any()
        self._names = {n["ID"]: n["Description"]["Hostname"] for n in ns}
        return ns

    def name_of(self, node_id: str) -> str:
        if node_id not in getattr(self, "_names", {}):
            self.nodes()
        return self._names[node_id]

    def leader(self) -> str | None:
        return next((n["Description"]["Hostname"] for n in self.nodes()
                     if (n.get("ManagerStatus") or {}).get("Leader")), None)

    def _service_tasks(self) -> list[dict]:
        self.nodes()
        c = self.client(self._via)
        try:
            return [t for t in c.api.tasks(filters={"service": SERVICE, "desired-state": "running"})
                    if t["Status"]["State"] == "running"]
        except Exception:
            return []

    def create_service(self) -> None:
        self.nodes()
        c = self.client(self._via)
        try:
            c.api.remove_service(SERVICE)
        except Exception:
            pass
        deadline = time.monotonic() + 60
        while True:
            try:
                c.api.create_service({"ContainerSpec": {"Image": IMAGE, "Command": ["sleep", "36000"]}},
                                     name=SERVICE, mode={"Replicated": {"Replicas": REPLICAS}})
                break
            except Exception as e:  # the removal is still being applied
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cannot create the service: {e}") from None
                time.sleep(0.5)
        wait(lambda: len(self._service_tasks()) == REPLICAS, 90, "3 tasks running")

    def transfer(self, to: str) -> None:
        c = self.client(self._via)
        c.api._result(c.api._post(c.api._url("/swarm/leader"), params={"to": to}), json=True)
        wait(lambda: self.leader() == to, 15, f"{to} shown as leader")

    def all_ready(self) -> bool:
        ns = self.nodes()
        ms = [n for n in ns if n.get("ManagerStatus")]
        return (len(ns) == self.hosts and all(n["Status"]["State"] == "ready" for n in ns)
                and len(ms) == self.managers and sum(bool(n["ManagerStatus"].get("Leader")) for n in ms) == 1
                and all(n["ManagerStatus"].get("Reachability") == "reachable" for n in ms))


def wait(cond, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = cond()
        except Exception:
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def trial(lc: LabCluster, victim_kind: str, settle: float, quiet: float) -> dict:
    lab = lc.lab
    for h in lab.hosts():
        if h.state != "running":
            lab.restart(h.name, wait_docker=True)
            lc.drop_client(h.name)
    wait(lc.all_ready, 120, "every node Ready, every manager Reachable, one leader")
    lc.create_service()
    tasks = lc._service_tasks()
    holders = {lc.name_of(t["NodeID"]) for t in tasks}
    nodes = lc.nodes()
    managers = {n["Description"]["Hostname"] for n in nodes if n.get("ManagerStatus")}
    leader = lc.leader()
    transferred = False
    if victim_kind == "leader":
        if leader not in holders:
            target = sorted(holders & managers)[0]
            lc.transfer(target)
            transferred = True
            leader = target
        victim = leader
        kind = "leader"
    else:
        cands = sorted(h for h in holders if h != leader and h not in managers) or \
            sorted(h for h in holders if h != leader)
        victim = cands[0]
        kind = "worker" if victim not in managers else "follower manager"
    time.sleep(quiet)  # every worker's session settled on the current leader
    ids = {n["Description"]["Hostname"]: n["ID"] for n in nodes}
    vid = ids[victim]
    survivors = {nid for name, nid in ids.items() if name != victim}
    via = sorted(m for m in managers if m != victim and (victim_kind == "leader" or m == leader))[0]
    cl = lc.client(via)
    before = {t["ID"]: t["NodeID"] for t in cl.api.tasks(filters={"service": SERVICE, "desired-state": "running"})
              if t["Status"]["State"] == "running"}
    healthy_before = {t for t, n in before.items() if n != vid}
    load_before = _load()

    t_kill = time.monotonic()
    lab.crash(victim)
    crash_took = time.monotonic() - t_kill
    sample = down_at = leader_at = None
    first_state: dict[str, float] = {}  # the replacement's states, first seen (where the time goes)
    not_ready: set[str] = set()
    errors = 0
    nxt = t_kill
    while True:
        now = time.monotonic()
        if now - t_kill > GIVE_UP_S:
            raise TimeoutError(f"3 tasks not running on survivors {GIVE_UP_S:.0f}s after the crash of {victim}")
        try:
            ts = cl.api.tasks(filters={"service": SERVICE, "desired-state": "running"})
            t_tasks = time.monotonic() - t_kill
            ns = cl.api.nodes()
            t_nodes = time.monotonic() - t_kill
        except Exception:
            errors += 1
            ts = ns = None
        if ts is not None:
            run = {t["ID"]: t["NodeID"] for t in ts if t["Status"]["State"] == "running"}
            for t in ts:
                if t["ID"] not in before:
                    first_state.setdefault(t["Status"]["State"], round(t_tasks, 3))
            if sample is None and sum(1 for n in run.values() if n in survivors) == REPLICAS:
                sample = t_tasks
            for n in ns:
                st = n["Status"]["State"]
                if n["ID"] == vid:
                    if down_at is None and st == "down":
                        down_at = t_nodes
                elif st != "ready":
                    not_ready.add(f"{n['Description']['Hostname']}:{st}")
                if leader_at is None and victim_kind == "leader" and n["ID"] != vid and \
                        (n.get("ManagerStatus") or {}).get("Leader"):
                    leader_at = t_nodes
        if sample is not None and now - t_kill >= max(MIN_WATCH_S, sample + settle):
            break
        nxt += POLL_S
        time.sleep(max(0.0, nxt - time.monotonic()))
    after = {t["ID"]: t["NodeID"] for t in cl.api.tasks(filters={"service": SERVICE, "desired-state": "running"})
             if t["Status"]["State"] == "running"}
    moved = sorted(t for t in healthy_before if t not in after)
    res = {
        "sample_s": round(sample, 3),
        "victim": victim,
        "victim_kind": kind,
        "victim_down_s": None if down_at is None else round(down_at, 3),
        "replacement_states_s": first_state,
        "new_leader_s": None if leader_at is None else round(leader_at, 3),
        "crash_s": round(crash_took, 3),
        "healthy_tasks_moved": len(moved),
        "live_nodes_not_ready": sorted(not_ready),
        "running_after": sum(1 for n in after.values() if n in survivors),
        "poll_errors": errors,
        "via": via,
        "leader_moved_first": transferred,
        "load1": round(load_before, 2),
    }
    lab.restart(victim, wait_docker=True)
    lc.drop_client(victim)
    return res


def run(args, src: dict) -> dict:
    lc = LabCluster(args.lab_name, args.layout)
    trials: list[dict] = []
    try:
        lc.build(fresh=args.fresh)
        while len(trials) < args.trials:
            r = trial(lc, args.victim, args.settle, args.quiet)
            trials.append(r)
            _log(f"trial {len(trials)}/{args.trials}: {r}")
    finally:
        lc.close()
        if not args.keep_lab:
            lc.lab.down()
    samples = [t["sample_s"] for t in trials]

    def col(k):
        return [t[k] for t in trials]

    downs = [x for x in col("victim_down_s") if x is not None]
    rests = [t["sample_s"] - t["victim_down_s"] for t in trials if t["victim_down_s"] is not None]
    return {
        "bench": "reschedule-lab",
        "victim": args.victim,
        "layout": args.layout,
        "hosts": lc.hosts,
        "managers": lc.managers,
        "trials": len(trials),
        "median_s": round(statistics.median(samples), 3),
        "max_s": round(max(samples), 3),
        "min_s": round(min(samples), 3),
        "samples": samples,
        "healthy_tasks_moved": sum(col("healthy_tasks_moved")),
        "live_nodes_not_ready_seen": sum(len(x) for x in col("live_nodes_not_ready")),
        "not_ready_details": [x for x in col("live_nodes_not_ready") if x],
        "victim_down_median_s": round(statistics.median(downs), 3) if downs else None,
        "victim_down_s": col("victim_down_s"),
        "down_to_running_median_s": round(statistics.median(rests), 3) if rests else None,
        "replacement_states_s": col("replacement_states_s"),
        "new_leader_s": col("new_leader_s") if args.victim == "leader" else None,
        "victims": col("victim"),
        "victim_kinds": sorted(set(col("victim_kind"))),
        "load1": col("load1"),
        "load1_median": round(statistics.median(col("load1")), 2),
        "settings": {"poll_s": POLL_S, "settle_s": args.settle, "quiet_s": args.quiet},
        **src,
    }
