"""`upgrade`: move every member of the swarm to another release without losing quorum or tasks.

Order and why:
1. Install the new release on every member in parallel *without* switching `current`: the
   slow part (upload, venv) happens while nothing is disturbed, and a host that cannot take the
   release fails the run before any agent was touched.
2. Workers in batches of N: wait until every replicated service runs its desired replicas
   (the previous batch's tasks have landed), drain (the orchestrator moves their tasks), switch `current`,
   restart the agent, health check, activate. Workers hold no Raft vote, so N at once is safe.
3. Managers ONE at a time, followers first, the leader LAST: each restart of a follower costs
   the voter set one member for a moment, never two. The leader goes last so leadership moves
   once, not once per manager, and before its agent restarts, leadership is handed to an
   upgraded manager (`POST /swarm/leader`, Raft's leadership transfer): writes pause for one
   round trip instead of an election timeout plus the time for everyone to notice the old
   leader stopped. If the transfer is refused, the agent is restarted anyway and a follower is
   elected. The handover (or leaderless) time is measured and printed.
4. Health check, per host, within `--timeout`: the new agent process runs the new release,
   stays up, opened a session with a dispatcher (its log says so after the restart; the
   cluster's node status alone would still say Ready from before the restart), and the node is
   Ready; a manager must also be a Reachable voter with a leader elected. On failure the host
   goes back to its previous release (`current` switched back, agent restarted) and the rollout
   STOPS with a message saying what was done; hosts already upgraded stay upgraded.

`drain=False` (`--no-drain`) skips drain/activate: the task containers belong to the host's
Docker engine and keep running while the agent restarts, and the new agent should adopt them.
Measured on the lab it is NOT yet safe: one run of two saw the service at 0 running replicas
for a moment (cause not found yet). Drain is the default: Swarm's documented procedure, safe
even when a restart is slow; each moved task costs the time its replacement needs to start.

Re-running after a stop (or a finished upgrade) skips hosts already running the release.
"""

from __future__ import annotations

import hashlib
import tarfile
import time
from pathlib import Path

from . import agentctl as ac
from . import autolock, modules, wheelhouse
from .cluster import Cluster, ClusterError, wait_for
from .inventory import Host
from .nodeops import transfer_leader, update_node
from .runner import StepResult
from .ssh import fan_out
from .wheelhouse import Wheelhouse


def resolve(version: str | None = None, wheel: str | None = None, log=print) -> Wheelhouse:
    """The wheelhouse to roll out: this tree's release by default; `version` names a
    wheelhouse in the local cache (built earlier from another commit or suffix); `wheel` is a
    wheelhouse tar or a swarmkit_py wheel (bundled with this tree's dependencies)."""
    if version and wheel:
        raise ClusterError("give --version or --wheel, not both")
    if wheel:
        p = Path(wheel).expanduser().resolve()
        if not p.is_file():
            raise ClusterError(f"--wheel {wheel}: no such file")
        sha = hashlib.sha256(p.read_bytes()).hexdigest()
        if p.suffix == ".whl":
            base = wheelhouse.build_unsuffixed(log=log)
            v = f"{p.name.split('-')[1]}-whl{sha[:10]}"
            return wheelhouse.relabel(base, v, {"swarmkit_py-": p})
        with tarfile.open(p) as tf:
            v = tf.extractfile("VERSION").read().decode().strip()
        return wheelhouse.relabel(Wheelhouse(v, p, sha), v)
    if version and version != wheelhouse.source_version():
        tar = wheelhouse.cache_dir() / f"swarmkit-py-{version}.tar"
        if not tar.exists():
            have = sorted(t.name[len("swarmkit-py-"):-4] for t in wheelhouse.cache_dir().glob("swarmkit-py-*.tar"))
            raise ClusterError(f"--version {version}: no wheelhouse for it in {wheelhouse.cache_dir()} "
                               f"(have: {', '.join(have) or 'none'}; this tree is {wheelhouse.source_version()})")
        return Wheelhouse(version, tar, tar.with_suffix(".sha256").read_text().strip())
    return wheelhouse.build(log=log)


def upgrade(cl: Cluster, wh: Wheelhouse, batch: int = 1, timeout: float = 60.0, drain: bool = True,
            handover: bool = True) -> dict:
    """Roll the swarm to `wh`; returns figures (seconds, hosts upgraded, leaderless gap)."""
    r = cl.runner
    t0 = time.monotonic()
    nodes = ac.nodes_by_host(cl)
    members = [h for h in cl.inv.hosts.values() if h.name in nodes]
    for name in cl.inv.hosts:
        if name not in nodes:
            r.console.print(f"[yellow]note:[/yellow] {name} is not in the swarm; skipped (`invoke scale --add {name}`)")
    bad = [f"{h.name} is {ac.state(nodes[h.name]) or '?'}" for h in members if ac.state(nodes[h.name]) != "ready"]
    bad += [f"{h.name} is {ac.reachability(nodes[h.name]) or '?'}" for h in members
            if ac.is_manager(nodes[h.name]) and ac.reachability(nodes[h.name]) not in ("leader", "reachable")]
    if bad:
        raise ClusterError("upgrade needs every member Ready and every manager Reachable, or a restart could "
                           f"cost quorum or tasks: {'; '.join(bad)} (replace or remove it first)")
    _install(cl, members, wh)
    workers = [h for h in members if not ac.is_manager(nodes[h.name])]
    managers = [h for h in members if ac.is_manager(nodes[h.name])]
    leader = next((h for h in managers if ac.reachability(nodes[h.name]) == "leader"), None)
    order = [h for h in managers if h is not leader] + ([leader] if leader else [])
    figures = {"version": wh.version, "upgraded": [], "leaderless_s": None}
    for i in range(0, len(workers), max(1, int(batch))):
        figures["upgraded"] += _roll(cl, workers[i:i + max(1, int(batch))], wh, timeout, False, drain)[0]
    for h in order:
        lt = time.monotonic()
        done, leaderless = _roll(cl, [h], wh, timeout, True, drain, handover)
        figures["upgraded"] += done
        if leaderless is not None:
            figures["leaderless_s"] = round(leaderless, 2)
            r.log(f"leadership moved off {h.name} in {leaderless:.2f}s; host done in {time.monotonic() - lt:.1f}s")
    figures["seconds"] = round(time.monotonic() - t0, 1)
    gap = f"; without a leader {figures['leaderless_s']:.2f}s" if figures["leaderless_s"] is not None else ""
    r.console.print(f"upgrade to {wh.version}: {len(figures['upgraded'])} host(s) upgraded, "
                    f"{len(members) - len(figures['upgraded'])} already on it, in {figures['seconds']:.1f}s{gap}")
    r.log(f"upgrade figures: {figures}")
    return figures


def _install(cl: Cluster, hosts: list[Host], wh: Wheelhouse) -> None:
    def steps_for(h: Host, conn):
        c = ac.ctx(cl, h, wheelhouse=wh)
        return c, [(f"release {wh.version}", modules.release)], []

    states = cl.runner.play(hosts, steps_for, f"install release {wh.version} (current unchanged)")
    bad = [h for h, s in states.items() if s != "ok"]
    if bad:
        raise ClusterError(f"release {wh.version} could not be installed on {', '.join(bad)}; no agent was "
                           "restarted (see the recap and the log)")


def _roll(cl: Cluster, hosts: list[Host], wh: Wheelhouse, timeout: float,
          manager: bool, drain: bool = True, handover: bool = True) -> tuple[list[str], float | None]:
    """Upgrade one batch: drain, switch, restart, health check, activate. Returns the names
    upgraded and, when the batch was the leader, the seconds the cluster had no leader."""
    r = cl.runner
    leaderless = None
    todo = []
    for h in hosts:
        if ac.current_release(cl, h) == wh.version and ac.running_release(cl, h) == wh.version:
            r.record(StepResult(h.name, f"upgrade to {wh.version}", "ok", "already running it"))
        else:
            todo.append(h)
    if not todo:
        return [], None
    names = ", ".join(h.name for h in todo)
    was_leader = manager and ac.reachability(ac.nodes_by_host(cl)[todo[0].name]) == "leader"
    prev = {h.name: ac.current_release(cl, h) for h in todo}
    with r.console.status(f"upgrading {'manager' if manager else 'worker(s)'} {names}: draining"):
        # the previous batch's moved tasks must be running again before more of them move,
        # or two batches' worth of replicas are down at once
        wait_for("every replicated service at its desired replicas", lambda: _converged(cl), 90)
        drained = [h for h in todo if _drain(cl, h)] if drain else []
        if any(cl.entry is h for h in todo):  # talk to a manager that stays up
            cl.client(prefer=next(m for m in _managers(cl) if m not in todo))
        marks = dict(zip([h.name for h in todo], fan_out(todo, lambda h: ac.log_mark(ac.ctx(cl, h)), r.forks), strict=True))
        if was_leader and handover:
            t_handover = time.monotonic()
            try:
                new = transfer_leader(cl, next(m for m in _managers(cl) if m not in todo).name)
                leaderless = time.monotonic() - t_handover
                r.log(f"leadership handed from {todo[0].name} to {new} in {leaderless:.2f}s")
                was_leader = False
            except (ClusterError, StopIteration) as e:
                r.log(f"no leadership handover before restarting {todo[0].name} ({e}); restarting it anyway")
        if manager:
            autolock.cluster_key(cl)  # while there is a leader to ask: the restarted one may come back locked
        for h in todo:
            _switch(cl, h, wh.version)
        t_restart = time.monotonic()
        fan_out(todo, lambda h: ac.restart(cl, h), r.forks)
        if manager:
            for h in todo:
                autolock.after_restart(cl, h)
    with r.console.status(f"upgrading {names}: health check (deadline {timeout:.0f}s)"):
        if was_leader:  # the followers' view: a leader that is not the restarted host
            try:
                wait_for("another manager to take over as leader",
                         lambda: ac.leader_name(cl) not in (None, todo[0].name), min(timeout, 15.0), 0.05)
                leaderless = time.monotonic() - t_restart
            except ClusterError:  # it won the election again: no handover to measure
                r.log(f"{todo[0].name} was leader again after its restart")
        results = fan_out(todo, lambda h: _healthy(cl, h, wh.version, marks[h.name], manager, timeout), r.forks)
    failed = [(h, e) for h, e in zip(todo, results, strict=True) if isinstance(e, Exception)]
    for h, e in failed:
        _rollback(cl, h, prev[h.name], str(e), h in drained)
    if failed:
        h, e = failed[0]
        raise ClusterError(f"upgrade STOPPED: {h.name} failed its health check on {wh.version} ({e}); it was "
                           f"rolled back to {prev[h.name]}. Hosts already upgraded stay on {wh.version}; the "
                           "others were not touched. Fix the release, then run the upgrade again.")
    for h in drained:
        update_node(cl, h.name, Availability="active")
    for h in todo:
        r.record(StepResult(h.name, f"upgrade to {wh.version}", "changed",
                            f"{prev[h.name]} -> {wh.version}; agent healthy" + ("; drained and reactivated" if h in drained else "")))
    return [h.name for h in todo], leaderless


def _managers(cl: Cluster) -> list[Host]:
    nodes = ac.nodes_by_host(cl)
    return [cl.inv.hosts[n] for n, v in nodes.items() if n in cl.inv.hosts
            and ac.reachability(v) in ("leader", "reachable")]


def _drain(cl: Cluster, h: Host) -> bool:
    """Drain `h` unless it already is (then the operator drained it: leave it drained after)."""
    n = cl.node(h.name)
    if n["Spec"].get("Availability") == "drain":
        return False
    update_node(cl, h.name, Availability="drain")
    # until the containers have really stopped (within their stop grace period), so the agent
    # restart does not interrupt a task's shutdown half way
    wait_for(f"the tasks of {h.name} to stop and move elsewhere", lambda: not [
        t for t in cl.client().api.tasks(filters={"node": n["ID"]})
        if t.get("Status", {}).get("State") in ("running", "starting", "preparing", "assigned")], 90)
    return True


def _converged(cl: Cluster) -> bool:
    c = cl.client()
    for svc in c.api.services():
        want = svc.get("Spec", {}).get("Mode", {}).get("Replicated", {}).get("Replicas")
        if want is None:
            continue
        tasks = c.api.tasks(filters={"service": svc["ID"], "desired-state": "running"})
        if sum(1 for t in tasks if t.get("Status", {}).get("State") == "running") < want:
            return False
    return True


def _switch(cl: Cluster, h: Host, version: str) -> None:
    c = ac.ctx(cl, h)
    status, msg, _ = modules.link(c, f"{ac.root(h)}/current", f"{ac.root(h)}/releases/{version}")
    if status == "failed":
        raise ClusterError(f"{h.name}: could not switch current to {version}: {msg}")


def _healthy(cl: Cluster, h: Host, version: str, mark: str, manager: bool, timeout: float) -> None:
    """Raise unless the agent on `h` passes the health check (module docstring) in time."""
    c = ac.ctx(cl, h)

    def session_opened() -> bool:
        return ac.log_grep(c, mark, "session .* open with")

    def ok() -> bool:
        if ac.running_release(cl, h) != version or not session_opened():
            return False
        n = ac.nodes_by_host(cl).get(h.name)
        if n is None or ac.state(n) != "ready":
            return False
        return not manager or (ac.reachability(n) in ("leader", "reachable") and ac.has_leader(cl))

    wait_for(f"{h.name} healthy on {version} (agent up, dispatcher session open, node Ready"
             + (", Reachable voter" if manager else "") + ")", ok, timeout, 0.2)


def _rollback(cl: Cluster, h: Host, prev: str | None, why: str, drained: bool) -> None:
    r = cl.runner
    r.record(StepResult(h.name, "health check", "failed", why))
    if not prev:
        r.record(StepResult(h.name, "rollback", "failed", "no previous release recorded; left as is"))
        return
    try:
        _switch(cl, h, prev)
        ac.restart(cl, h)
        autolock.after_restart(cl, h)
        if drained:
            update_node(cl, h.name, Availability="active")
        r.record(StepResult(h.name, "rollback", "changed", f"current -> {prev}; agent restarted"))
    except Exception as e:  # report, and still stop the rollout with the first failure's message
        r.record(StepResult(h.name, "rollback", "failed", str(e)))
