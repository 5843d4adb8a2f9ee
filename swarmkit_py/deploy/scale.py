"""`scale --add HOST[,HOST]`: grow a running swarm with new inventory hosts (kubespray's scale).

The same safety rules as bootstrap: the new hosts get the release the cluster's tree builds
(installed in parallel first), then hosts in the inventory's `managers` group join as managers
and the others as workers, all at once: the leader makes each new manager a learner and a voter
only once caught up, one membership change at a time (bootstrap.py says more). A host that is already a member is left
alone, so re-running it changes nothing. The manager count after the run is checked: an even
count gets the same warning as bootstrap.
"""

from __future__ import annotations

from . import agentctl as ac
from .bootstrap import install, join_hosts
from .cluster import Cluster, ClusterError, print_status
from .runner import StepResult


def scale_add(cl: Cluster, names: list[str]) -> list[str]:
    """Join `names` (inventory hosts); returns those that joined."""
    r = cl.runner
    if not names:
        raise ClusterError("scale: name at least one host (--add h6,h7)")
    hosts = [cl.inv.host(n) for n in names]
    cl.client()  # a swarm must exist: the message says to bootstrap otherwise
    members = cl.membership(hosts)
    unreachable = [h.name for h in hosts if isinstance(members[h.name], Exception)]
    if unreachable:
        raise ClusterError(f"cannot reach {', '.join(unreachable)} over SSH: {members[unreachable[0]]}")
    new = [h for h in hosts if not members[h.name]]
    for h in hosts:
        if members[h.name]:
            r.record(StepResult(h.name, "swarm member", "ok", f"already a {members[h.name].get('role', 'member')}"))
    if not new:
        return []
    states = install(r, new)
    bad = [h.name for h in new if states[h.name] != "ok"]
    if bad:
        raise ClusterError(f"install failed on {', '.join(bad)} (see the recap); nothing was joined")
    pinned = set(cl.inv.group("managers"))
    mgrs = [h for h in new if h.name in pinned]
    wrks = [h for h in new if h.name not in pinned]
    joined = join_hosts(cl, mgrs, wrks, {h.name: None for h in new})
    n = sum(1 for v in ac.nodes_by_host(cl).values() if ac.is_manager(v))
    if mgrs and n % 2 == 0:
        r.console.print(f"[yellow]warning:[/yellow] {n} managers tolerate no more failures than {n - 1} "
                        f"(quorum {ac.quorum(n)}); add or demote one to make the count odd")
    print_status(cl)
    return [h.name for h in joined]
