"""Rescheduling after a host crash: SIGKILL a host, time until 3 replicas run again elsewhere.

    python bench/reschedule_bench.py --trials 10 --victim worker|leader [--layout 3m2w|5m] [--out F]
    python bench/reschedule_bench.py --lab --trials 30 --victim worker|leader [--layout readme|seed]
        [--lab-name NAME] [--out F]     # power cuts in the local lab: the reference figure

`--lab` (needs root) is described in bench/_lab_reschedule.py; what follows is the loopback mode.

Prints ONE JSON line: victim, layout, trials, median_s, max_s, samples (seconds from the kill to
3 tasks Running on surviving nodes, one per trial), healthy_tasks_rescheduled (must be 0), and
side figures (when the victim was shown Down, when a new leader was seen, detection settings).

Per trial, a fresh cluster of real agent processes on loopback (swarmkit_py/testing/agents.py),
in the order of the issue's seed scenario: init m1, join w0..w3 as workers, create a service
of 3 replicas (`sleep 3600`, the local busybox image) and wait for 3 Running, then promote
(3m2w: two nodes -> 3 managers + 2 workers; 5m: all four). Promotion comes after placement so
the victim can be chosen to hold a task without a placement constraint that would also steer the
replacement: the scheduler breaks ties by node order, so the first three nodes get the tasks;
for 3m2w we promote the two task-less workers, leaving two task-holding workers (and a leader,
m1, holding one task). The victim is
  - worker: a non-leader host running a task (a worker in 3m2w, a follower manager in 5m);
  - leader: the Raft leader's host, which must run a task (checked; the trial's cluster is
    rebuilt if not).

A "host crash" here: every agent shares this machine's Docker engine, each touching only the
containers labelled com.docker.swarm.node.id=<its node id>. So the crash is SIGKILL of the
agent process (by the PID this script started) immediately followed by `docker rm -f` of the
containers carrying its node id, through the Docker SDK on the local engine. The clock starts
just before the SIGKILL.

Polling, every 100 ms, through one surviving manager's Docker API (SDK over TLS): the tasks of
the service with desired-state=running, and the node list. The sample is the first poll at
which 3 tasks are `running` on surviving nodes. After that the script keeps watching
(--settle, at least until kill + 8 s) and then compares: every task that ran on a surviving
node before the kill must still be desired running and running (healthy_tasks_rescheduled
counts those that are not), and no surviving node may have been shown anything but ready
(healthy_nodes_marked_down counts such observations, per node and trial).

Only loopback is used; only processes started here are signalled, by PID; clusters, containers
(by node label) and temp dirs are removed in finally blocks.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, git_commit, source_id

ROOT = Path(__file__).resolve().parent.parent
NODE_LABEL = "com.docker.swarm.node.id"
SERVICE = "web"
REPLICAS = 3
POLL_S = 0.1
GIVE_UP_S = 120.0
MIN_WATCH_AFTER_KILL_S = 8.0
WAIT_HEARTBEATS = True  # --no-heartbeat-wait: kill right after promotion (shows a worker-side race)
KEEP = False  # --keep-logs: leave each trial's temp dir (agent logs) for inspection


def _log(msg: str) -> None:
    print(f"[reschedule_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _engine():
    import subprocess

    import docker

    r = subprocess.run([str(ROOT / "scripts" / "docker-up.sh")], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"scripts/docker-up.sh failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return docker.from_env()


def _remove_containers(engine, node_id: str) -> int:
    n = 0
    for ct in engine.containers.list(all=True, filters={"label": f"{NODE_LABEL}={node_id}"}):
        try:
            ct.remove(force=True)
            n += 1
        except Exception as e:  # already gone (the agent removed it), or being removed
            if "No such container" not in str(e) and "already in progress" not in str(e):
                raise
    return n


def _client(c, manager, timeout: float = 2.0):
    cl = c.sdk(manager)
    cl.api.timeout = timeout  # a poll must not hang on a manager that is mid-election
    return cl


def _tasks(cl) -> list[dict]:
    return cl.api.tasks(filters={"service": SERVICE, "desired-state": "running"})


def _running_on(tasks: list[dict]) -> dict[str, str]:
    """task id -> node id, for tasks observed running."""
    return {t["ID"]: t.get("NodeID") for t in tasks if t["Status"]["State"] == "running"}


def _nodes(cl) -> list[dict]:
    return cl.api.nodes()


def _build(c, layout: str):
    """Found the cluster, run the service, promote.

    Returns (leader AgentProc, node ids by name, names of the managers, names of the task holders)."""
    from swarmkit_py.taskimage import TASK_IMAGE

    m1 = c.add("m1")
    c.init(m1)
    c.start(m1)
    c.client_bundle(m1)
    token = c.docker(m1, "swarm", "join-token", "-q", "worker").stdout.strip()
    workers = []
    for i in range(4):
        w = c.add(f"w{i}")
        c.join(w, token, m1)
        c.start(w, wait=False)
        workers.append(w)
    for w in workers:
        c.wait_for(lambda w=w: w.node_state() is not None, 30, f"{w.name} joined", w)
    cl = _client(c, m1, timeout=10)
    c.wait_for(lambda: sum(n["Status"]["State"] == "ready" for n in _nodes(cl)) == 5, 30, "5 nodes ready")
    ids = {n.name: n.node_state()["node_id"] for n in c.nodes.values()}
    names = {v: k for k, v in ids.items()}

    c.docker(m1, "service", "create", "-d", "--name", SERVICE, "--replicas", str(REPLICAS), TASK_IMAGE, "sleep", "3600")
    c.wait_for(lambda: len(_running_on(_tasks(cl))) == REPLICAS, 60, "3 tasks running")
    holders = {names[nid] for nid in _running_on(_tasks(cl)).values()}

    if layout == "5m":
        promote = [w.name for w in workers]
    else:
        # two task-less workers become managers: the remaining workers hold tasks
        empty = [w.name for w in workers if w.name not in holders]
        full = [w.name for w in workers if w.name in holders]
        promote = (empty + full)[:2]
    c.docker(m1, "node", "promote", *promote)
    nmgr = 1 + len(promote)

    def managers_ok():
        ns = _nodes(cl)
        ms = [n for n in ns if n.get("ManagerStatus")]
        return (len(ms) == nmgr and all(n["Status"]["State"] == "ready" for n in ns)
                and sum(bool(n["ManagerStatus"].get("Leader")) for n in ms) == 1
                and all(n["ManagerStatus"].get("Reachability") == "reachable" for n in ms))

    c.wait_for(managers_ok, 60, f"{nmgr} managers reachable, one leader")
    # every promoted node serves the API (its manager is up) and sees 3 running tasks
    for name in promote:
        n = c.nodes[name]
        c.wait_for(lambda n=n: n.api_port and len(_running_on(_tasks(_client(c, n)))) == REPLICAS, 30,
                   f"{name} serves the API", n)
    if WAIT_HEARTBEATS:
        # Workers learn the manager list from heartbeat answers only: wait until every node has
        # had two heartbeats answered after the promotion, so each knows all managers (without
        # this a worker may still know only m1 when the leader dies: see RESCHEDULE.md).
        hb = "swarmkit_worker_heartbeats_total"
        base = {n.name: c.metrics(n).get(hb, 0) for n in c.nodes.values()}
        for n in c.nodes.values():
            c.wait_for(lambda n=n: c.metrics(n).get(hb, 0) >= base[n.name] + 2, 15, f"{n.name} heartbeats", n)
    leader_id = next(n["ID"] for n in _nodes(cl) if (n.get("ManagerStatus") or {}).get("Leader"))
    cl.close()
    return c.nodes[names[leader_id]], ids, set(promote) | {"m1"}, holders


def _trial(layout: str, victim_kind: str, engine, settle: float) -> dict:
    from swarmkit_py.testing.agents import AgentCluster

    base = Path(tempfile.mkdtemp(prefix="skpy-resched-"))
    c = AgentCluster(base)
    clients = []
    try:
        t0 = time.monotonic()
        leader, ids, managers, holders = _build(c, layout)
        _log(f"cluster built in {time.monotonic() - t0:.1f}s; tasks on {sorted(holders)}, leader {leader.name}")
        names = {v: k for k, v in ids.items()}
        if victim_kind == "leader":
            victim = leader
            if victim.name not in holders:
                return {"retry": f"leader {victim.name} holds no task (tasks on {sorted(holders)})"}
        else:
            cands = [c.nodes[h] for h in sorted(holders) if h != leader.name and
                     (layout == "5m" or h not in managers)]
            if not cands:
                return {"retry": f"no non-leader {'worker ' if layout != '5m' else ''}host holds a task"}
            victim = cands[0]
        vid = ids[victim.name]
        via = next(c.nodes[m] for m in sorted(managers) if m != victim.name and
                   (victim_kind == "leader" or m == leader.name))
        cl = _client(c, via)
        clients.append(cl)
        before = _running_on(_tasks(cl))
        healthy_before = {t: n for t, n in before.items() if n != vid}
        survivors = {nid for name, nid in ids.items() if name != victim.name}

        t_kill = time.monotonic()
        c.kill(victim)
        removed = _remove_containers(engine, vid)
        t_crashed = time.monotonic() - t_kill

        sample = down_at = leader_at = None
        errors = 0
        marked_down: set[str] = set()
        deadline = t_kill + GIVE_UP_S
        nxt = t_kill
        while True:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"3 tasks not running on survivors {GIVE_UP_S}s after the kill; logs in {base}")
            try:
                tasks = _tasks(cl)
                t_tasks = time.monotonic() - t_kill
                nodes = _nodes(cl)
                t_nodes = time.monotonic() - t_kill
            except Exception:
                errors += 1
                tasks = nodes = None
            if tasks is not None:
                run = _running_on(tasks)
                if sample is None and sum(1 for n in run.values() if n in survivors) == REPLICAS:
                    sample = t_tasks
                for n in nodes:
                    st = n["Status"]["State"]
                    if n["ID"] == vid and down_at is None and st == "down":
                        down_at = t_nodes
                    elif n["ID"] in survivors and st != "ready":
                        marked_down.add(f"{names[n['ID']]}:{st}")
                    ms = n.get("ManagerStatus") or {}
                    if victim_kind == "leader" and leader_at is None and ms.get("Leader") and n["ID"] != vid:
                        leader_at = t_nodes
            if sample is not None and now - t_kill >= max(MIN_WATCH_AFTER_KILL_S, sample + settle):
                break
            nxt += POLL_S
            time.sleep(max(0.0, nxt - time.monotonic()))

        after = _running_on(_tasks(cl))
        rescheduled = sorted(t for t in healthy_before if t not in after)
        survivors_running = {t: n for t, n in after.items() if n in survivors}
        # the engine agrees: 3 containers of the service up on surviving nodes, none of the victim
        up = engine.containers.list(filters={"label": f"com.docker.swarm.service.name={SERVICE}", "status": "running"})
        ours = [ct for ct in up if ct.labels.get(NODE_LABEL) in set(ids.values())]
        res = {
            "sample_s": round(sample, 3),
            "victim": victim.name,
            "victim_down_s": None if down_at is None else round(down_at, 3),
            "new_leader_s": None if leader_at is None else round(leader_at, 3),
            "crash_s": round(t_crashed, 3),
            "victim_containers_removed": removed,
            "healthy_tasks_rescheduled": len(rescheduled),
            "healthy_nodes_not_ready_seen": sorted(marked_down),
            "running_after": len(survivors_running),
            "containers_running_after": len(ours),
            "victim_containers_after": sum(ct.labels.get(NODE_LABEL) == vid for ct in ours),
            "poll_errors": errors,
            "via": via.name,
        }
        return res
    finally:
        for cl in clients:
            try:
                cl.close()
            except Exception:
                pass
        t_clean = time.monotonic()
        try:
            # SIGKILL by PID (the harness's kill): a graceful SIGTERM would stop each task
            # container with its 10 s grace (busybox `sleep` as PID 1 ignores SIGTERM); the
            # containers are removed by label right after anyway
            for n in c.nodes.values():
                c.kill(n)
        finally:
            for n in c.nodes.values():
                st = n.node_state()
                if st:
                    try:
                        _remove_containers(engine, st["node_id"])
                    except Exception as e:
                        _log(f"cleanup of {n.name}'s containers failed: {e}")
            if KEEP:
                _log(f"kept {base}")
            else:
                shutil.rmtree(base, ignore_errors=True)
            _log(f"cleanup {time.monotonic() - t_clean:.1f}s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--victim", choices=["worker", "leader"], required=True)
    ap.add_argument("--layout", choices=["3m2w", "5m", "readme", "seed"], default=None,
                    help="loopback: 3m2w (default) or 5m; --lab: readme (7 hosts, 5 managers; default) "
                         "or seed (5 hosts, 3 managers promoted after the service)")
    ap.add_argument("--lab", action="store_true", help="power cuts of lab hosts, one Docker engine per host")
    ap.add_argument("--lab-name", default="bench", help="--lab: the lab to use (made and removed here)")
    ap.add_argument("--fresh", action="store_true", help="--lab: rebuild the lab even if it runs")
    ap.add_argument("--keep-lab", action="store_true", help="--lab: leave the lab up afterwards")
    ap.add_argument("--quiet", type=float, default=2.0,
                    help="--lab: seconds of quiet before each power cut (sessions settled)")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds to keep watching after convergence for wrongful rescheduling")
    ap.add_argument("--out", help="also append the JSON line to this JSONL file")
    ap.add_argument("--keep-logs", action="store_true", help="keep each trial's temp dir (agent logs)")
    ap.add_argument("--no-heartbeat-wait", action="store_true",
                    help="crash as soon as the promotion is done, not after 2 heartbeats of every node")
    a = ap.parse_args(argv)
    if a.lab:
        a.layout = a.layout or "readme"
        if a.layout not in ("readme", "seed"):
            ap.error("--lab layouts are readme and seed")
        import _lab_reschedule

        emit(_lab_reschedule.run(a, {"commit": git_commit(), **source_id()}), a.out)
        return
    a.layout = a.layout or "3m2w"
    if a.layout not in ("3m2w", "5m"):
        ap.error("loopback layouts are 3m2w and 5m (readme and seed need --lab)")
    global KEEP, WAIT_HEARTBEATS
    KEEP = a.keep_logs
    WAIT_HEARTBEATS = not a.no_heartbeat_wait

    from swarmkit_py.agent.config import AgentConfig
    from swarmkit_py.manager.dispatcher.dispatcher import Dispatcher
    from swarmkit_py.raft.config import RaftConfig

    engine = _engine()
    rc = RaftConfig()
    import inspect

    grace_mult = inspect.signature(Dispatcher.__init__).parameters["grace_multiplier"].default
    hb = AgentConfig.model_fields["heartbeat_period_s"].default
    src = {"commit": git_commit(), **source_id()}
    trials: list[dict] = []
    retries = 0
    try:
        while len(trials) < a.trials:
            r = _trial(a.layout, a.victim, engine, a.settle)
            if "retry" in r:
                retries += 1
                _log(f"rebuilding: {r['retry']}")
                if retries > 3 * a.trials:
                    raise SystemExit("could not place a task on the wanted victim")
                continue
            trials.append(r)
            _log(f"trial {len(trials)}/{a.trials}: {r}")
    finally:
        engine.close()
    samples = [t["sample_s"] for t in trials]

    def col(k):
        return [t[k] for t in trials]

    result = {
        "victim": a.victim,
        "layout": a.layout,
        "trials": len(trials),
        "median_s": round(statistics.median(samples), 3),
        "max_s": round(max(samples), 3),
        "min_s": round(min(samples), 3),
        "samples": samples,
        "healthy_tasks_rescheduled": sum(col("healthy_tasks_rescheduled")),
        "healthy_nodes_not_ready_seen": sum(len(x) for x in col("healthy_nodes_not_ready_seen")),
        "victim_down_median_s": statistics.median([x for x in col("victim_down_s") if x is not None] or [float("nan")]),
        "victim_down_s": col("victim_down_s"),
        "new_leader_s": col("new_leader_s") if a.victim == "leader" else None,
        "victims": col("victim"),
        "all_converged_to": sorted(set(col("running_after")) | set(col("containers_running_after"))),
        "rebuilt_clusters": retries,
        "settings": {"heartbeat_s": hb, "grace_multiplier": grace_mult, "raft_tick_ms": rc.tick_ms,
                     "raft_election_s": [rc.election_timeout_s, 2 * rc.election_timeout_s],
                     "poll_s": POLL_S, "settle_s": a.settle, "heartbeat_wait": WAIT_HEARTBEATS},
        **src,
    }
    emit(result, a.out)


if __name__ == "__main__":
    main()
