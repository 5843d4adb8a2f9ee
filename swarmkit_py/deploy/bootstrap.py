"""`bootstrap --managers N`: from bare hosts to a running swarm, and a no-op on a running one.

Order matters for safety. Everything is installed first (in parallel), so no join waits on a
slow upload. `init` runs on the first manager only: on fresh hosts (none of them in a swarm)
as soon as that host's own install is done, while the others' installs run, and it writes
the operator's client bundle in the same process (`init --client-bundle`, a new 0700
directory, copied here and removed from the host). If another manager then fails to install,
bootstrap stops with that error as before, leaving the founder a one-manager swarm that a
re-run completes like any partial bootstrap. Then the other managers and the workers
join all at once, and bootstrap waits until every manager is a Reachable voter and every
worker Ready. Concurrent manager joins are safe because the leader, not this tool, orders
them: a joining manager enters Raft as a learner (no vote, not counted in quorum), is made a
voter only once its log has caught up, and the Raft core accepts one membership change at a
time (a second is refused until the first is applied, and the join retries it). So the voter
set still grows by one caught-up member at a time, as it did when this tool joined managers
one after the other, without paying a full join round trip (CSR, agent start, catch-up) per
manager in sequence.

A host that is already a member is never re-joined or re-roled here (the operator's
promote/demote are for that): re-running bootstrap reports 0 changed.
"""

from __future__ import annotations

import shlex
import threading

from . import api, roles, wheelhouse
from .cluster import API_POLL_S, Cluster, ClusterError, bundle_path, print_status, wait_for
from .inventory import Host, Inventory, InventoryError
from .runner import Runner, StepResult
from .ssh import fan_out

JOIN_TIMEOUT = 90.0


def choose_managers(inv: Inventory, n: int) -> tuple[list[Host], list[Host], list[str]]:
    """(managers, workers, warnings): the `managers` group first, then unpinned hosts in
    inventory order; hosts in `workers` are never managers."""
    warnings = []
    total = len(inv.hosts)
    if n < 1:
        raise InventoryError("--managers must be at least 1")
    if n > total:
        raise InventoryError(f"{inv.path}: --managers {n} but the inventory has only {total} host(s)")
    pinned = inv.group("managers")
    pinned_w = set(inv.group("workers"))
    if len(pinned) > n:
        raise InventoryError(f"{inv.path}: the 'managers' group pins {len(pinned)} hosts but --managers is {n}")
    free = [h for h in inv.hosts if h not in pinned and h not in pinned_w]
    if len(pinned) + len(free) < n:
        raise InventoryError(f"{inv.path}: --managers {n} but only {len(pinned) + len(free)} hosts may be "
                             f"managers ({len(pinned_w)} pinned in 'workers')")
    names = pinned + free[: n - len(pinned)]
    if n % 2 == 0:
        warnings.append(f"{n} managers tolerate no more failures than {n - 1} (quorum {n // 2 + 1}); "
                        "an odd number is better")
    if n > 7:
        warnings.append(f"{n} managers: every write is replicated to each of them; more than 7 costs "
                        "traffic and latency for no useful fault tolerance")
    managers = [inv.hosts[h] for h in names]
    workers = [h for h in inv.hosts.values() if h.name not in names]
    return managers, workers, warnings


def install(runner: Runner, hosts: list[Host], per_host=None, pending: dict | None = None,
            on_done=None, upload_gate: UploadGate | None = None) -> dict[str, str]:
    """The common and agent roles on every host, in parallel; host -> ok|failed|unreachable.
    With `pending`, agent restarts of hosts whose per_host vars say defer_restart are
    collected there (host -> restarted|reloaded) instead of done. `on_done`: Runner.play's;
    `upload_gate`: whose release upload goes first (UploadGate)."""
    with runner.console.status("wheelhouse: checking the cache"):
        wh = wheelhouse.build(log=runner.log)
    runner.log(f"wheelhouse {wh.version} {wh.tar} sha256={wh.sha256}")
    extra = {"release": wh.version, "wheelhouse": wh, "pending_restarts": pending, "upload_gate": upload_gate}
    if per_host:
        extra["per_host"] = per_host
    steps = roles.plan([roles.Role("common"), roles.Role("agent")], extra)
    return runner.play(hosts, steps, f"install swarmkit-py {wh.version}", on_done=on_done)


def bootstrap(inv: Inventory, runner: Runner, n: int) -> Cluster:
    managers, workers, warnings = choose_managers(inv, n)
    for w in warnings:
        runner.console.print(f"[yellow]warning:[/yellow] {w}")
    runner.console.print(f"managers: {', '.join(h.name for h in managers)}; "
                         f"workers: {', '.join(h.name for h in workers) or '-'}")
    cl = Cluster(inv, runner)
    read = cl.membership(managers + workers)
    before = {k: v for k, v in read.items() if not isinstance(v, Exception)}
    pending: dict[str, str] = {}
    # fresh hosts (every one read, none in a swarm): found the swarm on the first manager as
    # soon as its own install is done, while the others' installs run
    early = None if runner.check or len(before) < len(read) or any(before.values()) else _Founder(cl, managers)
    states = install(runner, managers + workers, lambda h: {"defer_restart": bool(before.get(h.name))}, pending,
                     on_done=early.host_done if early else None, upload_gate=early.gate if early else None)
    if early:
        early.join()
    bad_mgr = [h.name for h in managers if states[h.name] != "ok"]
    if bad_mgr:
        raise ClusterError(f"manager host(s) {', '.join(bad_mgr)} failed to install or are unreachable; "
                           "a swarm is not formed with managers missing")
    founded = early.result() if early else False
    workers = [h for h in workers if states[h.name] == "ok"]
    if founded:  # nothing to read again: the hosts had no swarm state, and only init/join write it
        members = {h.name: None for h in managers + workers}
        first = managers[0]
    else:
        first, members = _first_manager(cl, managers, workers, before)
    if runner.check:
        _check_joins(runner, managers, workers, members, first)
        return cl
    cl.client(prefer=first, timeout=JOIN_TIMEOUT)
    if pending:
        rolling_restart(cl, [inv.hosts[h] for h in pending], pending)
    join_hosts(cl, [h for h in managers if h is not first], workers, members)
    print_status(cl)
    return cl


def _first_manager(cl: Cluster, managers: list[Host], workers: list[Host], before: dict) -> tuple[Host, dict]:
    """(the manager new members join through, every host's membership), founding the swarm
    on the first manager when no host is in one."""
    runner = cl.runner
    # read again only where it could differ: a member whose install changed something (its
    # agent, restarted, may rewrite its state) or a host not read before; a host that had no
    # state has none now (only init/join write it), so a fresh bootstrap skips this round trip
    again = [h for h in managers + workers
             if h.name not in before or (before[h.name] and (runner.recap.counts.get(h.name) or {}).get("changed", 0))]
    members = {**{h.name: before.get(h.name) for h in managers + workers}, **cl.membership(again)}
    first = next((h for h in managers if _role(members[h.name]) == "manager"), None)
    if first is None:
        first = next((h for h in workers if _role(members[h.name]) == "manager"), None)
    if first is None:
        if any(members[h.name] for h in managers + workers):
            raise ClusterError("some hosts are in a swarm but none of them is a manager; "
                               "use `invoke recover` or reset those hosts")
        first = managers[0]
        _found(cl, first)
    else:
        runner.record(StepResult(first.name, "swarm member", "ok", "manager"))
    return first, members


class UploadGate:
    """The first host's release upload goes alone, the others' wait for it (modules.release):
    the uploads share the operator's CPU and link, so seven at once finish together, and the
    founder, whose `init` and API are on the way of every join, would wait for all of them.
    Opened when that upload is done, not needed, or the host's play ended (whatever the
    outcome): no host waits for one that will not upload. (Making the others' unpacks wait
    for the founder's too was tried in round 11 and not kept: bench/README.md.)"""

    def __init__(self, first: Host):
        self.first = first
        self._open = threading.Event()

    def wait(self, h: Host) -> None:
        if h.name != self.first.name:
            self._open.wait()

    def done(self, h: Host) -> None:
        if h.name == self.first.name:
            self._open.set()


class _Founder:
    """`init` on the first manager of fresh hosts as soon as its install is done (Runner.play's
    `on_done`), on a thread of its own while the other hosts install; `join()` after the play.
    The other managers' agents are told, as their installs end, that they will join as
    managers (Cluster.expect_manager)."""

    def __init__(self, cl: Cluster, managers: list[Host]):
        self.cl, self.h = cl, managers[0]
        self.joiners = {m.name for m in managers[1:]}
        self.gate = UploadGate(self.h)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def host_done(self, h: Host, state: str) -> None:
        self.gate.done(h)
        if h.name in self.joiners and state == "ok":  # its agent, started, loads its manager half while it waits
            self.cl.expect_manager(h)
        if h.name == self.h.name and state == "ok":
            self.thread = threading.Thread(target=self._run, name=f"init {h.name}", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            _found(self.cl, self.h)
        except BaseException as e:  # noqa: BLE001 - raised again on the caller's thread by result()
            self.error = e

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()

    def result(self) -> bool:
        """After join(): whether the swarm was founded here (False: the founder's install
        failed, so it was not tried); raises what founding raised."""
        if self.error is not None:
            raise self.error
        return self.thread is not None


def _role(state) -> str | None:
    return state.get("role") if isinstance(state, dict) else None


def _found(cl: Cluster, h: Host) -> None:
    r = cl.runner
    if r.check:
        r.record(StepResult(h.name, "swarm init", "changed", "would found the swarm here"))
        return
    # the operator's client bundle is signed by init itself (no `client-cert` process after it)
    remote = bundle_path()
    res = cl.node_request(h, {"op": "init", "client_bundle": remote}, f"init --client-bundle {remote}")
    if res.rc:
        r.record(StepResult(h.name, "swarm init", "failed", res.stderr.strip()))
        r.conn(h).run(f"rm -rf {shlex.quote(remote)}")
        raise ClusterError(f"init on {h.name} failed: {res.stderr.strip()}")
    r.record(StepResult(h.name, "swarm init", "changed", "founded the swarm"))
    cl.adopt_bundle(h, remote, timeout=JOIN_TIMEOUT)
    r.log(f"[{h.name}] the Docker API answers with the new client bundle")


def _check_joins(r: Runner, managers, workers, members, first) -> None:
    for h in managers + workers:
        if h is first:
            continue
        role = "manager" if h in managers else "worker"
        have = _role(members.get(h.name))
        if have is None:
            r.record(StepResult(h.name, "swarm member", "changed", f"would join as a {role}"))
        else:
            r.record(StepResult(h.name, "swarm member", "ok", have))


def join(cl: Cluster, h: Host, role: str, token: str | None = None) -> None:
    """`swarmkit-py join` on `h` as a `role` through the cluster's current entry manager."""
    token = token or cl.join_token(role)
    via = f"{cl.entry.advertise_ip}:{cl.entry.vars['swarmkit_cluster_port']}"
    # --expect-role: the host's agent, waiting for the join, loads what the role needs meanwhile
    res = cl.node_request(h, {"op": "join", "manager": via, "token": token, "role": role},
                          f"join --token {shlex.quote(token)} --expect-role {role} {shlex.quote(via)}")
    if res.rc:
        raise ClusterError(f"join of {h.name} as a {role} failed: {res.stderr.strip() or res.stdout.strip()}")


def node_ready(cl: Cluster, name: str, manager: bool) -> bool:
    return ready_in(cl.client().api.nodes(), name, manager)


def ready_in(nodes: list[dict], name: str, manager: bool) -> bool:
    """`name` is Ready in the node list (and, for a manager, the Leader or Reachable)."""
    for n in nodes:
        if n.get("Description", {}).get("Hostname") != name:
            continue
        if (n.get("Status", {}).get("State") or "").lower() != "ready":
            return False
        if not manager:
            return True
        ms = n.get("ManagerStatus") or {}
        return bool(ms.get("Leader")) or (ms.get("Reachability") or "").lower() == "reachable"
    return False


def join_hosts(cl: Cluster, managers: list[Host], workers: list[Host], members) -> list[Host]:
    """Join the hosts of `managers` and `workers` that are not swarm members yet, all at once,
    and wait until the new managers are Reachable voters and the new workers Ready (the
    module docstring says why concurrent manager joins are safe). Members are left alone and
    reported ok. Returns the hosts joined; a worker that fails is reported failed, a manager
    that fails raises ClusterError once the others are in."""
    r = cl.runner
    todo: list[tuple[Host, str]] = []
    for h, role in [(h, "manager") for h in managers] + [(h, "worker") for h in workers]:
        have = _role(members.get(h.name))
        if have is None and members.get(h.name):
            have = "member"
        if have is None:
            todo.append((h, role))
        elif role == "manager" and have == "worker":
            r.record(StepResult(h.name, "swarm member", "ok",
                                f"a worker, not a manager as chosen: `invoke promote {h.name}` to change it"))
            r.console.print(f"[yellow]note:[/yellow] {h.name} is a worker; bootstrap leaves existing roles alone "
                            f"(`invoke promote {h.name}`)")
        else:
            r.record(StepResult(h.name, "swarm member", "ok", have))
    if not todo:
        return []
    n_mgr = sum(role == "manager" for _, role in todo)
    what = ", ".join(f"{n} {k}(s)" for n, k in ((n_mgr, "manager"), (len(todo) - n_mgr, "worker")) if n)
    with r.console.status(f"joining {what} at once; waiting until managers are Reachable voters and workers Ready"):
        tokens = cl.join_tokens()
        errs = fan_out(todo, lambda hr: join(cl, hr[0], hr[1], tokens[hr[1]]), r.forks)
        failed = [(h, role, e) for (h, role), e in zip(todo, errs, strict=True) if isinstance(e, Exception)]
        for h, _, e in failed:
            r.record(StepResult(h.name, "swarm member", "failed", api.explain(e)))
        joined = [(h, role) for (h, role), e in zip(todo, errs, strict=True) if not isinstance(e, Exception)]

        left = [h.name for h, _ in joined]

        def all_ready() -> bool:
            nodes = cl.client().api.nodes()
            left[:] = [h.name for h, role in joined if not ready_in(nodes, h.name, role == "manager")]
            return not left

        if joined:
            try:
                wait_for("joined hosts to be Ready (managers Reachable)", all_ready, JOIN_TIMEOUT, interval=2 * API_POLL_S)
            except ClusterError as e:
                raise ClusterError(f"{e}; not yet: {', '.join(left)}") from None
    for h, role in joined:
        r.record(StepResult(h.name, "swarm member", "changed",
                            "joined as a manager (Reachable)" if role == "manager" else "joined as a worker"))
    bad_mgr = [f"{h.name}: {api.explain(e)}" for h, role, e in failed if role == "manager"]
    if bad_mgr:
        raise ClusterError("manager join failed: " + "; ".join(bad_mgr))
    return [h for h, _ in joined]


def rolling_restart(cl: Cluster, hosts: list[Host], how: dict[str, str]) -> None:
    """Restart agents of swarm members without losing quorum: managers one at a time, each
    back as a Reachable voter (and a leader elected) before the next; then workers together."""
    from . import agentctl, autolock

    r = cl.runner
    state = {n["Description"]["Hostname"]: n for n in cl.client().api.nodes()}
    mgrs = [h for h in hosts if (state.get(h.name, {}).get("ManagerStatus"))]
    wrks = [h for h in hosts if h not in mgrs]

    def restart(h: Host) -> str:
        agentctl.restart(cl, h, how=how[h.name])
        return h.name

    if mgrs:
        autolock.cluster_key(cl)  # while there is a leader to ask: a restarted manager may come back locked

    for h in mgrs:
        with r.console.status(f"rolling restart: manager {h.name}"):
            if cl.entry is h:  # keep the API connection on a manager that stays up
                cl.client(prefer=next((m for m in cl.candidates() if m is not h and m.name in state
                                       and state[m.name].get("ManagerStatus")), h))
            restart(h)
            autolock.after_restart(cl, h)
            wait_for(f"{h.name} back as a Reachable manager with a leader elected",
                     lambda h=h: node_ready(cl, h.name, True) and _has_leader(cl), JOIN_TIMEOUT)
        r.record(StepResult(h.name, "rolling restart", "changed", "agent restarted; Reachable again"))
    if wrks:
        with r.console.status(f"rolling restart: {len(wrks)} worker(s)"):
            fan_out(wrks, restart, r.forks)
            wait_for("restarted workers Ready", lambda: all(node_ready(cl, h.name, False) for h in wrks), JOIN_TIMEOUT)
        for h in wrks:
            r.record(StepResult(h.name, "rolling restart", "changed", "agent restarted; Ready again"))


def _has_leader(cl: Cluster) -> bool:
    return any((n.get("ManagerStatus") or {}).get("Leader") for n in cl.client().api.nodes())
