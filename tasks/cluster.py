"""Form the swarm and look at it: bootstrap, status, join-token, docker-env, verify, dashboard."""

from __future__ import annotations

from invoke import Exit, task

from ._op import INV_HELP, op


@task(help={"managers": "how many managers (odd, at most 7 recommended)", "inventory": INV_HELP,
            "check": "show what would change (nothing is changed)", "diff": "show diffs of templates",
            "forks": "hosts handled in parallel (default 10)",
            "autolock": "also turn auto-lock on, writing the unlock key to this file (0600; never printed or logged)"})
def bootstrap(c, managers=3, inventory=None, check=False, diff=False, forks=10, autolock=None):
    """Install the agent on every inventory host and form the swarm: init on the first manager,
    then the other managers and the workers join at once (the leader adds managers as learners
    and makes each a voter once caught up, one at a time); it returns when every manager is a
    Reachable voter and every worker Ready. The 'managers'/'workers' groups pin roles.
    Re-running it changes nothing."""
    from swarmkit_py.deploy.autolock import set_autolock
    from swarmkit_py.deploy.bootstrap import bootstrap as run

    def go(cl, r):
        run(cl.inv, r, int(managers))
        if autolock and not check:
            print(set_autolock(cl, True, autolock))

    op(go, "bootstrap", inventory, recap=True, check=check, diff=diff, forks=forks)


@task(help={"inventory": INV_HELP})
def status(c, inventory=None):
    """The cluster as `docker node ls` shows it (hostname, status, availability, manager
    status, version) and its services with their replicas."""
    from swarmkit_py.deploy.cluster import print_status

    op(lambda cl, r: print_status(cl), "status", inventory)


@task(name="join-token", positional=["role"], help={"role": "worker or manager", "inventory": INV_HELP,
                                                      "rotate": "replace the token first (the old one stops working)"})
def join_token(c, role, inventory=None, rotate=False):
    """Print the current join token for ROLE (worker|manager); --rotate replaces it first."""
    from swarmkit_py.deploy.nodeops import join_token as run

    print(op(lambda cl, r: run(cl, role, rotate), "join-token", inventory))


@task(name="docker-env", optional=["host"], help={"host": "a manager to talk to (default: any live one)",
                                                   "inventory": INV_HELP})
def docker_env(c, host=None, inventory=None):
    """Print export lines that point the docker CLI at the cluster:
    eval "$(invoke docker-env)"; docker node ls"""
    from swarmkit_py.deploy.nodeops import docker_env as run

    print(op(lambda cl, r: run(cl, host), "docker-env", inventory))


@task(help={"inventory": INV_HELP, "release": "expected release (default: this source tree's)"})
def verify(c, inventory=None, release=None):
    """Check every host with testinfra (tests/infra): agent supervised and listening on its
    address, config matching the inventory, keys 0600, `current` on the release, Docker up."""
    from swarmkit_py.deploy.verify import run

    rc = run(inventory, release)
    if rc:
        raise Exit(code=rc)


@task(help={"port": "port on 127.0.0.1 (default 8765; 0 picks a free one)",
            "interval": "seconds between two looks at the cluster (default 1, at least 0.5)",
            "inventory": INV_HELP})
def dashboard(c, port=8765, interval=1.0, inventory=None):
    """Serve a live view of the cluster on http://127.0.0.1:PORT/ (one column per node with its
    tasks, services and replicas, the leader), fed by the cluster's API through this inventory's
    client bundle. Runs until Ctrl-C."""
    from swarmkit_py.deploy.dashboard import serve

    def ready(url: str) -> None:
        print(f"dashboard: {url} (Ctrl-C to stop)", flush=True)

    op(lambda cl, r: serve(cl, int(port), float(interval), ready=ready), "dashboard", inventory)
