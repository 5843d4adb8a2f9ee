"""Operator verbs on a running swarm: join tokens, promote/demote, drain/activate, docker-env.

They go through the Docker API so the cluster's own guards apply (no demoting the last
manager, none that would cost quorum, and so on), and a refusal is shown in the cluster's
words. After a role change we wait until the cluster shows it, because "the API said OK" is
not "the node is a Reachable voter" and the operator's next step usually depends on the latter.
"""

from __future__ import annotations

from . import api
from .cluster import Cluster, ClusterError, row, wait_for

ROLE_TIMEOUT = 60.0


def join_token(cl: Cluster, role: str, rotate: bool = False) -> str:
    if role not in ("worker", "manager"):
        raise ClusterError(f"join-token: role must be 'worker' or 'manager', not {role!r}")
    c = cl.client()
    if rotate:
        sw = c.api.inspect_swarm()
        try:
            c.api.update_swarm(version=sw["Version"]["Index"], swarm_spec=sw["Spec"],
                               rotate_worker_token=role == "worker", rotate_manager_token=role == "manager")
        except Exception as e:
            raise ClusterError(f"rotation refused: {api.explain(e)}") from None
    return cl.join_token(role)


def update_node(cl: Cluster, name: str, **changes) -> dict:
    n = cl.node(name)
    spec = dict(n["Spec"])
    if all(spec.get(k) == v for k, v in changes.items()):
        return n
    spec.update(changes)
    try:
        cl.client().api.update_node(n["ID"], n["Version"]["Index"], spec)
    except Exception as e:
        raise ClusterError(f"{name}: refused by the cluster: {api.explain(e)}") from None
    return cl.node(name)


def promote(cl: Cluster, name: str) -> str:
    before = cl.node(name)
    if before["Spec"].get("Role") == "manager" and before.get("ManagerStatus"):
        return f"{name} is already a manager"
    update_node(cl, name, Role="manager")
    wait_for(f"{name} to become a Reachable manager",
             lambda: row(cl.node(name))["manager"] in ("Reachable", "Leader"), ROLE_TIMEOUT)
    return f"{name} promoted: now a Reachable manager"


def demote(cl: Cluster, name: str) -> str:
    before = cl.node(name)
    if before["Spec"].get("Role") == "worker" and not before.get("ManagerStatus"):
        return f"{name} is already a worker"
    if cl.entry.name == name:  # keep talking to a manager that stays one
        others = [h for h in cl.candidates() if h.name != name]
        for h in others:
            if row(cl.node(h.name))["manager"] in ("Reachable", "Leader"):
                cl.client(prefer=h)
                break
    update_node(cl, name, Role="worker")
    wait_for(f"{name} to leave the Raft membership", lambda: not cl.node(name).get("ManagerStatus"), ROLE_TIMEOUT)
    return f"{name} demoted: now a worker"


def transfer_leader(cl: Cluster, to: str | None = None, timeout: float = 15.0) -> str:
    """Move Raft leadership to manager `to` (None: the most caught-up other manager) through
    the API's `POST /swarm/leader`; returns the new leader's name once the cluster shows it.
    A planned restart of the leader's host does this first, so writes wait for one round trip
    instead of an election timeout."""
    c = cl.client()
    params = {"to": cl.node(to)["ID"]} if to else {}
    try:
        node = c.api._result(c.api._post(c.api._url("/swarm/leader"), params=params), json=True)
    except Exception as e:
        raise ClusterError(f"leadership transfer{' to ' + to if to else ''} refused: {api.explain(e)}") from None
    name = node.get("Description", {}).get("Hostname") or node.get("ID")
    wait_for(f"{name} to be shown as leader", lambda: any(
        row(n)["manager"] == "Leader" and n.get("Description", {}).get("Hostname") == name for n in cl.nodes()),
        timeout, 0.05)
    return name


def availability(cl: Cluster, name: str, value: str) -> str:
    before = row(cl.node(name))["availability"].lower()
    if before == value:
        return f"{name} is already {value}"
    update_node(cl, name, Availability=value)
    what = {"drain": "drained: its tasks move to other nodes, none will be scheduled on it",
            "active": "active: eligible for tasks again"}.get(value, value)
    return f"{name} {what}"


def docker_env(cl: Cluster, host: str | None = None) -> str:
    """The shell lines that point the docker CLI at a manager with the client bundle."""
    if host:
        h = cl.inv.host(host)
        cl.client(prefer=h)  # first: the node check below then asks the same client (one race)
        if row(cl.node(host))["manager"] not in ("Reachable", "Leader"):
            raise ClusterError(f"{host} is not a reachable manager; the Docker API is served by managers only")
    else:
        h = cl.entry
    return "\n".join([
        f"export DOCKER_HOST=tcp://{api.api_url(h)}",
        "export DOCKER_TLS_VERIFY=1",
        f"export DOCKER_CERT_PATH={cl.bundle.resolve()}",
        f"# run: eval \"$(invoke docker-env{' ' + host if host else ''} --inventory {cl.inv.path})\"",
    ])
