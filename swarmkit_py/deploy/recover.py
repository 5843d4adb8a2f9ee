"""`recover`: the managers lost their quorum for good; rebuild it from the best survivor.

Steps:
1. Confirm quorum is really lost: if any manager's API shows a leader, refuse (replace or
   demote the dead managers instead; forcing a new cluster then would throw away a healthy one).
2. Find the surviving managers: inventory hosts that answer SSH and whose agent state says
   `manager`. Stop all their agents: a frozen log can be compared, and no survivor keeps
   campaigning while another is being recovered.
3. Choose the most up-to-date survivor by its Raft log, read on the host by the installed
   release's own storage code (`DiskStorage.load()`: last entry's term and index, plus the
   commit index it knew). The choice is Raft's own election rule: higher last term, then
   higher last index. This is exact, where a WAL file's size or mtime is not (a compaction or
   a snapshot makes a longer log look shorter), and it needs no new CLI subcommand.
4. On it: `swarmkit-py recover --force-new-cluster` (keeps every entry of its log, old log kept
   aside), start the agent, wait for it to lead.
   With auto-lock on, steps 3 and 4 need the unlock key (--key-file): it goes to the host on
   the commands' stdin (`--unlock-key-stdin`), never on their command lines (deploy/autolock.py).
5. Every other survivor: `swarmkit-py leave --force` (wipes its old Raft state), start its
   agent, join with the manager token, ONE AT A TIME, each a Reachable voter before the next.
   Before that, their old node entries (same hostname, old ID) are demoted and removed, so
   each host is listed once. Lost managers are listed with the command that replaces them.
"""

from __future__ import annotations

import json

from . import agentctl as ac
from . import autolock
from .bootstrap import join, node_ready
from .cluster import Cluster, ClusterError, print_status, wait_for
from .inventory import Host
from .runner import StepResult
from .ssh import fan_out

TIMEOUT = 90.0


def recover(cl: Cluster) -> str:
    r = cl.runner
    _refuse_if_quorum(cl)
    hosts = list(cl.inv.hosts.values())
    members = cl.membership(hosts)
    lost = [h.name for h in hosts if isinstance(members[h.name], Exception)]
    survivors = [h for h in hosts if isinstance(members[h.name], dict) and members[h.name].get("role") == "manager"]
    if not survivors:
        raise ClusterError("no reachable host holds manager state; nothing to recover from "
                           f"(unreachable: {', '.join(lost) or 'none'})")
    for h, res in zip(survivors, fan_out(survivors, lambda h: ac.stop(cl, h), r.forks), strict=True):
        if isinstance(res, Exception):
            raise ClusterError(f"could not stop the agent on {h.name}: {res}")
        r.record(StepResult(h.name, "stop agent", "changed" if res == "stopped" else "ok", res))
    pos = dict(zip([h.name for h in survivors], fan_out(survivors, lambda h: _log_position(cl, h), r.forks), strict=True))
    _print_positions(cl, pos)
    good = {k: v for k, v in pos.items() if not isinstance(v, Exception)}
    if not good:
        raise ClusterError("no survivor's Raft log could be read: " + "; ".join(f"{k}: {v}" for k, v in pos.items()))
    best = cl.inv.hosts[max(good, key=lambda k: (good[k]["term"], good[k]["index"], good[k]["commit"]))]
    r.console.print(f"most up-to-date: {best.name} (last term {good[best.name]['term']}, "
                    f"last index {good[best.name]['index']})")
    locked = autolock.is_locked_on_disk(cl, best)
    out = ac.host_cmd(cl, best, "recover --force-new-cluster" + (" --unlock-key-stdin" if locked else ""),
                      stdin=_key_for(cl, best) if locked else None)
    r.record(StepResult(best.name, "recover --force-new-cluster", "changed", out.splitlines()[-1] if out else ""))
    ac.start(cl, best)
    cl._client = None  # the old entry point may be a survivor being wiped
    if (cl.bundle / "key.pem").exists():  # the operator's bundle still works: the CA is the same
        try:
            wait_for(f"the Docker API of {best.name}", lambda: cl.api_answers(best), TIMEOUT / 3)
        except ClusterError:
            pass  # a stale bundle: client() issues a new one
    cl.client(prefer=best, timeout=TIMEOUT)
    wait_for(f"{best.name} to lead the recovered cluster", lambda: ac.leader_name(cl) == best.name, TIMEOUT)
    r.record(StepResult(best.name, "leader", "ok", "leads the recovered cluster"))
    old_ids = {h.name: members[h.name].get("node_id") for h in survivors}
    # the old entries go first: a re-joined host gets a new node ID, and two entries with one
    # hostname (one of them a manager no longer in Raft) would confuse every check by name
    _clean_stale(cl, [h.name for h in survivors if h is not best], old_ids)
    for h in survivors:
        if h is not best:
            _rejoin(cl, h)
    gone = sorted(n for n, v in ac.nodes_by_host(cl).items() if ac.is_manager(v) and ac.state(v) != "ready")
    print_status(cl)
    hint = (f" Lost managers still listed: {', '.join(gone)}; replace each with `invoke replace OLD NEW`."
            if gone else "")
    return f"recovered from {best.name}; {len(survivors) - 1} other manager(s) re-joined.{hint}"


def _refuse_if_quorum(cl: Cluster) -> None:
    try:
        leader = ac.leader_name(cl)
    except ClusterError:
        return  # no manager answers at all: certainly no quorum to protect
    except Exception as e:  # an API that errors is no evidence of a healthy cluster
        cl.runner.log(f"recover: API check failed: {e}")
        return
    if leader:
        raise ClusterError(f"the cluster has a leader ({leader}): quorum is intact, refusing to force a new "
                           "cluster. Replace the failed managers instead (`invoke replace OLD NEW`).")


def _key_for(cl: Cluster, h: Host) -> str:
    if not cl.unlock_key:
        raise ClusterError(f"{h.name}'s Raft state is sealed by auto-lock: pass --key-file FILE (the unlock key "
                           "`invoke autolock` wrote) so that its log can be read and recovered")
    return cl.unlock_key + "\n"


def _log_position(cl: Cluster, h: Host) -> dict:
    state = cl.state_dir(h)
    locked = autolock.is_locked_on_disk(cl, h)
    cmd = f"{ac.root(h)}/current/bin/swarmkit-py log-position --state-dir {ac.q(state)}"
    if locked:
        cmd += " --unlock-key-stdin"
    res = cl.runner.conn(h).run(cmd, stdin=_key_for(cl, h) if locked else None)
    if res.rc:
        raise ClusterError(f"reading the Raft log under {state}: {res.stderr.strip()[-300:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _print_positions(cl: Cluster, pos: dict) -> None:
    for name, p in pos.items():
        if isinstance(p, Exception):
            cl.runner.console.print(f"  {name}: [red]{p}[/red]")
        else:
            cl.runner.console.print(f"  {name}: last term {p['term']}, last index {p['index']}, commit {p['commit']}")
            cl.runner.log(f"raft log position {name}: {p}")


def _rejoin(cl: Cluster, h: Host) -> None:
    r = cl.runner
    with r.console.status(f"re-joining {h.name} as a manager"):
        ac.host_cmd(cl, h, "leave --force")
        ac.start(cl, h)
        join(cl, h, "manager")
        wait_for(f"{h.name} Ready and a Reachable manager", lambda: node_ready(cl, h.name, True), TIMEOUT)
    r.record(StepResult(h.name, "re-join", "changed", "state wiped; joined as a manager (Reachable)"))


def _clean_stale(cl: Cluster, names: list[str], old_ids: dict) -> None:
    """Remove the node entries the re-joined hosts had before (same hostname, old ID)."""
    c = cl.client()
    for n in cl.nodes():
        name = n.get("Description", {}).get("Hostname")
        if name not in names or n["ID"] != old_ids.get(name):
            continue
        try:
            if n["Spec"].get("Role") == "manager":
                c.api.update_node(n["ID"], n["Version"]["Index"], {**n["Spec"], "Role": "worker"})
                wait_for(f"the old entry of {name} demoted",
                         lambda n=n: not c.api.inspect_node(n["ID"]).get("ManagerStatus"), TIMEOUT)
            c.api.remove_node(n["ID"], force=True)
            cl.runner.record(StepResult(name, "old node entry", "changed", f"{n['ID'][:12]} removed"))
        except Exception as e:  # leave it listed; the operator can `docker node rm` it
            cl.runner.record(StepResult(name, "old node entry", "failed", f"{n['ID'][:12]}: {e}"))
