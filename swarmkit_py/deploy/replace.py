"""`replace OLD NEW`: swap a node for a fresh host, dead or alive, never losing quorum.

A manager: with N managers of which R are reachable, joining NEW first gives N+1 members
needing floor((N+1)/2)+1 votes with R+1 reachable; removing OLD first gives N-1 members needing
floor((N-1)/2)+1 with R (or R-1 if OLD is alive) reachable. NEW joins first when that keeps
quorum (the cluster never has fewer voters than before), else OLD goes first; the arithmetic
is printed either way. OLD is demoted (`docker node demote`: Raft removes it from the voter
set) and then removed from the node list (`docker node rm --force`).

A worker: NEW joins, OLD is drained (its tasks move while it can still stop them cleanly),
then removed. NEW takes OLD's role; it needs to be in the inventory, OLD need not be (it may
already be gone from it). When OLD is still reachable over SSH its agent is stopped and its
swarm state wiped, so a retired box does not keep knocking at the cluster's door.

Re-running after a success changes nothing: OLD is gone from the node list, NEW is a member.
"""

from __future__ import annotations

from . import agentctl as ac
from .bootstrap import install, join, node_ready
from .cluster import Cluster, ClusterError, print_status, wait_for
from .inventory import Host
from .nodeops import update_node
from .runner import StepResult
from .ssh import Unreachable

TIMEOUT = 90.0


def replace(cl: Cluster, old: str, new: str) -> str:
    r = cl.runner
    new_h = cl.inv.host(new)
    nodes = ac.nodes_by_host(cl)
    old_n = nodes.get(old)
    new_member = new in nodes and ac.state(nodes[new]) == "ready"
    if old_n is None:
        if new_member:
            r.record(StepResult(new, "replace", "ok", f"{old} is not in the swarm and {new} is a member"))
            return f"nothing to do: {old} is already gone and {new} is a member"
        raise ClusterError(f"{old} is not a node of this swarm (`invoke status` lists them)")
    if new_member:
        raise ClusterError(f"{new} is already a member of the swarm; replace needs a fresh host")
    role = "manager" if ac.is_manager(old_n) else "worker"
    alive = ac.state(old_n) == "ready"
    r.console.print(f"replacing {old} ({role}, {'alive' if alive else ac.state(old_n) or 'down'}) with {new}")
    if role == "worker":
        _add(cl, new_h, "worker")
        if alive:
            update_node(cl, old, Availability="drain")
            r.record(StepResult(old, "drain", "changed", "tasks moved to other nodes"))
        _remove(cl, old, old_n)
    else:
        if _new_first(cl, nodes, old, alive):
            _add(cl, new_h, "manager")
            _remove(cl, old, old_n)
        else:
            _remove(cl, old, old_n)
            _add(cl, new_h, "manager")
    _retire(cl, old)
    print_status(cl)
    return (f"{old} replaced by {new} ({role}). Update the inventory: remove {old}"
            + (f", and list {new} in the 'managers' group" if role == "manager" else "") + ".")


def _new_first(cl: Cluster, nodes: dict, old: str, alive: bool) -> bool:
    """Print the quorum arithmetic for both orders and say which one keeps quorum."""
    mgrs = {k: v for k, v in nodes.items() if ac.is_manager(v)}
    n = len(mgrs)
    # Ready too: the API's Reachability can still say "reachable" for a manager that died
    # moments ago, while its node status (heartbeats) already says down
    up = sum(1 for v in mgrs.values() if ac.reachability(v) in ("leader", "reachable") and ac.state(v) == "ready")
    add_ok = up + 1 >= ac.quorum(n + 1)
    up_after_rm = up - (1 if alive else 0)
    rm_ok = up_after_rm >= ac.quorum(n - 1) if n > 1 else False
    say = cl.runner.console.print
    say(f"quorum: {n} managers, {up} reachable, quorum {ac.quorum(n)}")
    say(f"  join first:   {n + 1} managers, quorum {ac.quorum(n + 1)}, reachable {up + 1} -> "
        + ("keeps quorum" if add_ok else "LOSES quorum"))
    say(f"  remove first: {n - 1} managers, quorum {ac.quorum(n - 1) if n > 1 else '-'}, reachable {up_after_rm} -> "
        + ("keeps quorum" if rm_ok else "LOSES quorum"))
    if not add_ok and not rm_ok:
        raise ClusterError(f"no order keeps quorum ({up} of {n} managers reachable): the cluster has lost it; "
                           "run `invoke recover` first")
    say(f"  -> {'join NEW first' if add_ok else 'remove OLD first'}")
    return add_ok


def _add(cl: Cluster, h: Host, role: str) -> None:
    r = cl.runner
    states = install(r, [h])
    if states[h.name] != "ok":
        raise ClusterError(f"install on {h.name} failed ({states[h.name]}); {h.name} was not joined")
    member = cl.membership([h])[h.name]
    if isinstance(member, dict) and member:  # stale state of an old swarm on a "fresh" host
        raise ClusterError(f"{h.name} holds swarm state already ({member.get('role')}); `invoke reset` it first")
    with r.console.status(f"joining {h.name} as a {role}"):
        join(cl, h, role)
        wait_for(f"{h.name} Ready" + (" and a Reachable manager" if role == "manager" else ""),
                 lambda: node_ready(cl, h.name, role == "manager"), TIMEOUT)
    r.record(StepResult(h.name, "swarm member", "changed", f"joined as a {role}"))


def _remove(cl: Cluster, name: str, node: dict) -> None:
    """Demote (a manager leaves the Raft voter set) and remove the node from the list."""
    r = cl.runner
    c = cl.client()
    if ac.is_manager(node):
        if cl.entry.name == name:
            cl.client(prefer=next(cl.inv.hosts[k] for k, v in ac.nodes_by_host(cl).items()
                                  if k != name and k in cl.inv.hosts and ac.reachability(v) in ("leader", "reachable")))
            c = cl.client()
        n = _by_id(cl, node["ID"])
        spec = {**n["Spec"], "Role": "worker"}
        try:
            c.api.update_node(n["ID"], n["Version"]["Index"], spec)
        except Exception as e:
            raise ClusterError(f"demote of {name} refused: {_explain(e)}") from None
        wait_for(f"{name} to leave the Raft voter set", lambda: not _by_id(cl, node["ID"]).get("ManagerStatus"), TIMEOUT)
        r.record(StepResult(name, "demote", "changed", "removed from the Raft voter set"))
    try:
        c.api.remove_node(node["ID"], force=True)
    except Exception as e:
        raise ClusterError(f"node rm {name} refused: {_explain(e)}") from None
    wait_for(f"{name} gone from the node list", lambda: all(n["ID"] != node["ID"] for n in cl.nodes()), TIMEOUT)
    r.record(StepResult(name, "node rm --force", "changed", "removed from the node list"))


def _retire(cl: Cluster, name: str) -> None:
    """If OLD is in the inventory and answers SSH: stop its agent and wipe its swarm state."""
    h = cl.inv.hosts.get(name)
    if h is None:
        return
    try:
        ac.stop(cl, h, timeout=20)
        ac.host_cmd(cl, h, "leave --force")
        cl.runner.record(StepResult(name, "retire", "changed", "agent stopped, swarm state wiped"))
    except (Unreachable, ClusterError, OSError) as e:
        cl.runner.record(StepResult(name, "retire", "skipped", f"not reachable ({e}); nothing to clean there"))


def _by_id(cl: Cluster, node_id: str) -> dict:
    return cl.client().api.inspect_node(node_id)


def _explain(e: Exception) -> str:
    from .api import explain

    return explain(e)
