"""Change the cluster's shape or version, keeping quorum and replicas: scale, upgrade,
replace, recover, reset."""

from __future__ import annotations

from invoke import task

from ._op import INV_HELP, names, op


@task(help={"add": "inventory hosts to join: h6,h7 (hosts in the 'managers' group join as managers)",
            "inventory": INV_HELP, "forks": "hosts installed in parallel (default 10)"})
def scale(c, add, inventory=None, forks=10):
    """Join new inventory hosts to the running swarm: install the agent on them, then the
    'managers' group members one at a time (each a Reachable voter before the next), the rest
    as workers in parallel. Hosts already in the swarm are left alone."""
    from swarmkit_py.deploy.scale import scale_add

    op(lambda cl, r: scale_add(cl, names(add)), "scale", inventory, recap=True, forks=forks)


@task(help={"version": "a release in the local wheelhouse cache (default: this tree's release)",
            "wheel": "a wheelhouse tar, or a swarmkit_py wheel bundled with this tree's dependencies",
            "batch": "workers upgraded at once (default 1); managers always go one at a time",
            "timeout": "seconds a host has to pass its health check before it is rolled back (default 60)",
            "drain": "drain each host first (default); --no-drain restarts agents under running tasks (not yet safe)",
            "handover": "move leadership off the leader before restarting its agent (default); "
                        "--no-handover restarts it and lets the followers elect (writes pause longer)",
            "key_file": "the unlock key, for auto-locked managers (default: asked of the cluster, which "
                        "hands it to its operator while it has a leader)",
            "inventory": INV_HELP, "forks": "hosts installed in parallel (default 10)"})
def upgrade(c, version=None, wheel=None, batch=1, timeout=60, drain=True, handover=True, key_file=None,
            inventory=None, forks=10):
    """Rolling upgrade with no loss of quorum or replicas: install the release everywhere, then
    workers in batches (drain, switch `current`, restart, health check, activate), then the
    managers one at a time, the leader last, after handing its leadership to an upgraded
    manager. A host failing its health check is switched back to its previous release and the
    rollout stops. Managers that come back locked (auto-lock) are unlocked over SSH."""
    from swarmkit_py.deploy.upgrade import resolve
    from swarmkit_py.deploy.upgrade import upgrade as run

    key = _unlock_key(key_file)

    def go(cl, r):
        cl.use_unlock_key(key)
        wh = resolve(version, wheel, log=r.log)
        return run(cl, wh, int(batch), float(timeout), bool(drain), handover=bool(handover))

    op(go, "upgrade", inventory, recap=True, forks=forks)


@task(positional=["old", "new"], help={"old": "the node to retire (dead or alive)",
                                       "new": "a fresh inventory host that takes its role", "inventory": INV_HELP})
def replace(c, old, new, inventory=None):
    """Replace node OLD with host NEW, keeping quorum at every step: for a manager NEW joins
    first when the count allows (else OLD is removed first), with the arithmetic printed; OLD
    is demoted and removed from the node list; a worker OLD is drained first."""
    from swarmkit_py.deploy.replace import replace as run

    print(op(lambda cl, r: run(cl, old, new), "replace", inventory, recap=True))


@task(help={"key_file": "the unlock key (the file `invoke autolock` wrote), for auto-locked managers; "
                        "'-' reads it from a prompt without echo or one line of stdin",
            "inventory": INV_HELP})
def recover(c, key_file=None, inventory=None):
    """After quorum loss: stop the surviving managers, pick the one with the most up-to-date
    Raft log, `--force-new-cluster` it, then wipe and re-join the other survivors as managers
    one at a time. Refused while the cluster still has a leader. With auto-lock on, the unlock
    key goes to the hosts on their commands' stdin over SSH, never on a command line."""
    from swarmkit_py.deploy.recover import recover as run

    key = _unlock_key(key_file)

    def go(cl, r):
        cl.use_unlock_key(key)
        return run(cl)

    print(op(go, "recover", inventory, recap=True))


def _unlock_key(key_file):
    """The unlock key from --key-file (or '-': prompt / stdin), None without the option."""
    from invoke import Exit

    from swarmkit_py.deploy.autolock import read_key
    from swarmkit_py.deploy.cluster import ClusterError

    if not key_file:
        return None
    try:
        return read_key(None if key_file == "-" else key_file)
    except ClusterError as e:
        raise Exit(f"{e}", code=2) from None


@task(help={"yes": "really do it (without it nothing is touched)", "inventory": INV_HELP})
def reset(c, yes=False, inventory=None):
    """Remove the agent, its supervisor or unit, its task containers and all swarm state from
    every inventory host. Needs --yes."""
    from swarmkit_py.deploy.reset import reset as run

    op(lambda cl, r: run(cl, yes), "reset", inventory, recap=True)
