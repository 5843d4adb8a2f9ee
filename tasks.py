"""Operator tasks. `invoke --list` shows them; `invoke --help TASK` shows a task's help.

Task functions stay thin: the logic lives in swarmkit_py/deploy/ so tests use it directly.
"""

from __future__ import annotations

import re
import sys
import time

from invoke import Collection, Exit, task

NAME_HELP = "lab name (default 'lab'); each name is an independent lab with its own subnet"


def _lab(name: str, subnet: str | None = None):
    from swarmkit_py.deploy.lab import Lab

    try:
        return Lab(name, subnet=subnet)
    except ValueError as e:
        raise Exit(str(e), code=2) from None


def _guard(fn, *args, **kw):
    from swarmkit_py.deploy.lab import LabError

    try:
        return fn(*args, **kw)
    except (LabError, ValueError) as e:
        raise Exit(f"lab: {e}", code=1) from None


@task(help={"hosts": "number of hosts h1..hN (default 7)",
            "docker": "run a Docker engine in each host (~70 MiB each); --no-docker for SSH only",
            "subnet": "IPv4 /24 for the lab (default derived from the name, 10.77.0.0/24 for 'lab')",
            "name": NAME_HELP})
def up(c, hosts=7, docker=True, subnet=None, name="lab"):
    """Start N SSH hosts on this machine (needs root). Idempotent: running hosts are left
    alone, missing or crashed ones are booted. Writes inventories/lab/hosts.yml."""
    lab = _lab(name, subnet)
    t0 = time.monotonic()
    result = _guard(lab.up, int(hosts), docker=docker)
    for h, what in result.items():
        print(f"{h:5} {lab.address(h):15} {what}")
    print(f"lab {name}: {len(result)} hosts up in {time.monotonic() - t0:.2f}s; "
          f"inventory {lab.inventory_path}")


@task(help={"name": NAME_HELP})
def down(c, name="lab"):
    """Kill every host and remove everything the lab made: namespaces, veths, bridge, iptables
    rules, cgroups, state dir and inventory. Leaves nothing behind."""
    left = _guard(_lab(name).down)
    if left:
        raise Exit("lab: could not remove:\n  " + "\n  ".join(left), code=1)
    print(f"lab {name}: down, nothing left")


@task(positional=["host"], help={"host": "host to crash (h1, h2, ...)", "name": NAME_HELP})
def crash(c, host, name="lab"):
    """Cut the power of HOST: its link goes down, then every process of it (sshd, dockerd,
    containers, agent) is killed at once."""
    took = _guard(_lab(name).crash, host)
    print(f"{host}: crashed ({took * 1000:.0f} ms)")


@task(positional=["host"], help={"host": "host to boot again", "name": NAME_HELP,
            "wait_docker": "also wait until its Docker engine answers"})
def restart(c, host, name="lab", wait_docker=False):
    """Boot a crashed HOST again on its persistent disk; runs /etc/swarmkit-py/autostart."""
    t0 = time.monotonic()
    what = _guard(_lab(name).restart, host, wait_docker=wait_docker)
    print(f"{host}: {'already running' if what == 'running' else 'booted'} "
          f"({time.monotonic() - t0:.2f}s)")


@task(positional=["hosts"], help={"hosts": "hosts to isolate: h1,h2 (or 'h1 h2' quoted)", "name": NAME_HELP})
def partition(c, hosts, name="lab"):
    """Isolate HOSTS (e.g. `lab.partition h1,h2`) from the other lab hosts (both directions; the controller still reaches
    every host). Several calls add up; lab.heal removes them all."""
    names = [h for h in re.split(r"[,\s]+", hosts) if h]
    pairs = _guard(_lab(name).partition, *names)
    print(f"partitioned {', '.join(names)} from the rest ({len(pairs)} drop rules)")


@task(help={"name": NAME_HELP})
def heal(c, name="lab"):
    """Remove every partition of the lab."""
    n = _guard(_lab(name).heal)
    print(f"healed ({n} drop rules removed)")


@task(help={"name": NAME_HELP})
def status(c, name="lab"):
    """Show each host: address, running or crashed, memory, partitions."""
    from swarmkit_py.deploy.lab.report import print_status

    _guard(print_status, _lab(name))


@task(positional=["host", "cmd"], help={"host": "host to run on", "cmd": "shell command", "name": NAME_HELP,
                                         "timeout": "seconds to wait for the connection (default 5)"})
def ssh(c, host, cmd, name="lab", timeout=5.0):
    """Run CMD on HOST over SSH as root, checking the host key against the lab's known_hosts."""
    lab = _lab(name)
    try:
        rc, _out, _err = _guard(lab.ssh, host, cmd, timeout=float(timeout), hide=False)
    except OSError as e:  # unreachable, crashed, refused
        raise Exit(f"{host}: ssh failed: {e}", code=255) from None
    sys.stdout.flush()
    if rc:
        raise Exit(code=rc)


lab = Collection("lab", up, down, crash, restart, partition, heal, status, ssh)
ns = Collection(lab)


# --- cluster operations over SSH and the Docker API (logic in swarmkit_py/deploy/) ------------

INV_HELP = "Ansible YAML inventory (default: $SWARMKIT_INVENTORY or inventories/lab/hosts.yml)"


def _op(fn, name: str, inventory=None, recap=False, **kw):
    """Run fn(cluster, runner) in an operator session; errors become a message and an exit code."""
    from swarmkit_py.deploy.session import OperatorError, session

    try:
        with session(name, inventory, recap=recap, **kw) as (cl, runner):
            return fn(cl, runner)
    except OperatorError as e:
        raise Exit(str(e), code=e.code) from None


@task(help={"managers": "how many managers (odd, at most 7 recommended)", "inventory": INV_HELP,
            "check": "show what would change (nothing is changed)", "diff": "show diffs of templates",
            "forks": "hosts handled in parallel (default 10)"})
def bootstrap(c, managers=3, inventory=None, check=False, diff=False, forks=10):
    """Install the agent on every inventory host and form the swarm: init on the first manager,
    the other managers one at a time (each a Reachable voter before the next), then the workers
    in parallel. The 'managers'/'workers' groups pin roles. Re-running it changes nothing."""
    from swarmkit_py.deploy.bootstrap import bootstrap as run

    _op(lambda cl, r: run(cl.inv, r, int(managers)), "bootstrap", inventory, recap=True,
        check=check, diff=diff, forks=forks)


@task(help={"inventory": INV_HELP})
def status(c, inventory=None):
    """The cluster as `docker node ls` shows it (hostname, status, availability, manager
    status, version) and its services with their replicas."""
    from swarmkit_py.deploy.cluster import print_status

    _op(lambda cl, r: print_status(cl), "status", inventory)


@task(name="join-token", positional=["role"], help={"role": "worker or manager", "inventory": INV_HELP,
                                                      "rotate": "replace the token first (the old one stops working)"})
def join_token(c, role, inventory=None, rotate=False):
    """Print the current join token for ROLE (worker|manager); --rotate replaces it first."""
    from swarmkit_py.deploy.nodeops import join_token as run

    print(_op(lambda cl, r: run(cl, role, rotate), "join-token", inventory))


def _node_task(verb: str, doc: str):
    from swarmkit_py.deploy import nodeops

    fn = {"promote": nodeops.promote, "demote": nodeops.demote,
          "drain": lambda cl, h: nodeops.availability(cl, h, "drain"),
          "activate": lambda cl, h: nodeops.availability(cl, h, "active")}[verb]

    def body(c, host, inventory=None):
        print(_op(lambda cl, r: fn(cl, host), verb, inventory))

    body.__doc__ = doc
    body.__name__ = verb
    return task(body, name=verb, positional=["host"], help={"host": "inventory host name", "inventory": INV_HELP})


promote = _node_task("promote", "Make HOST a manager; waits until it is a Reachable Raft voter.")
demote = _node_task("demote", "Make HOST a worker; refused when it would cost the managers their quorum.")
drain = _node_task("drain", "Stop scheduling tasks on HOST and move its tasks elsewhere.")
activate = _node_task("activate", "Make a drained HOST eligible for tasks again.")


@task(name="docker-env", optional=["host"], help={"host": "a manager to talk to (default: any live one)",
                                                   "inventory": INV_HELP})
def docker_env(c, host=None, inventory=None):
    """Print export lines that point the docker CLI at the cluster:
    eval "$(invoke docker-env)"; docker node ls"""
    from swarmkit_py.deploy.nodeops import docker_env as run

    print(_op(lambda cl, r: run(cl, host), "docker-env", inventory))


@task(help={"inventory": INV_HELP, "release": "expected release (default: this source tree's)"})
def verify(c, inventory=None, release=None):
    """Check every host with testinfra (tests/infra): agent supervised and listening on its
    address, config matching the inventory, keys 0600, `current` on the release, Docker up."""
    from swarmkit_py.deploy.verify import run

    rc = run(inventory, release)
    if rc:
        raise Exit(code=rc)


ns.add_task(bootstrap)
ns.add_task(status)
ns.add_task(join_token)
for _t in (promote, demote, drain, activate):
    ns.add_task(_t)
ns.add_task(docker_env)
ns.add_task(verify)


# --- life cycle: scale, upgrade, replace, recover, reset (logic in swarmkit_py/deploy/) ---------

@task(help={"add": "inventory hosts to join: h6,h7 (hosts in the 'managers' group join as managers)",
            "inventory": INV_HELP, "forks": "hosts installed in parallel (default 10)"})
def scale(c, add, inventory=None, forks=10):
    """Join new inventory hosts to the running swarm: install the agent on them, then the
    'managers' group members one at a time (each a Reachable voter before the next), the rest
    as workers in parallel. Hosts already in the swarm are left alone."""
    from swarmkit_py.deploy.scale import scale_add

    names = [h for h in re.split(r"[,\s]+", add) if h]
    _op(lambda cl, r: scale_add(cl, names), "scale", inventory, recap=True, forks=forks)


@task(help={"version": "a release in the local wheelhouse cache (default: this tree's release)",
            "wheel": "a wheelhouse tar, or a swarmkit_py wheel bundled with this tree's dependencies",
            "batch": "workers upgraded at once (default 1); managers always go one at a time",
            "timeout": "seconds a host has to pass its health check before it is rolled back (default 60)",
            "drain": "drain each host first (default); --no-drain restarts agents under running tasks (not yet safe)",
            "inventory": INV_HELP, "forks": "hosts installed in parallel (default 10)"})
def upgrade(c, version=None, wheel=None, batch=1, timeout=60, drain=True, inventory=None, forks=10):
    """Rolling upgrade with no loss of quorum or replicas: install the release everywhere, then
    workers in batches (drain, switch `current`, restart, health check, activate), then the
    managers one at a time, the leader last. A host failing its health check is switched back
    to its previous release and the rollout stops."""
    from swarmkit_py.deploy.upgrade import resolve
    from swarmkit_py.deploy.upgrade import upgrade as run

    def go(cl, r):
        wh = resolve(version, wheel, log=r.log)
        return run(cl, wh, int(batch), float(timeout), bool(drain))

    _op(go, "upgrade", inventory, recap=True, forks=forks)


@task(positional=["old", "new"], help={"old": "the node to retire (dead or alive)",
                                       "new": "a fresh inventory host that takes its role", "inventory": INV_HELP})
def replace(c, old, new, inventory=None):
    """Replace node OLD with host NEW, keeping quorum at every step: for a manager NEW joins
    first when the count allows (else OLD is removed first), with the arithmetic printed; OLD
    is demoted and removed from the node list; a worker OLD is drained first."""
    from swarmkit_py.deploy.replace import replace as run

    print(_op(lambda cl, r: run(cl, old, new), "replace", inventory, recap=True))


@task(help={"inventory": INV_HELP})
def recover(c, inventory=None):
    """After quorum loss: stop the surviving managers, pick the one with the most up-to-date
    Raft log, `--force-new-cluster` it, then wipe and re-join the other survivors as managers
    one at a time. Refused while the cluster still has a leader."""
    from swarmkit_py.deploy.recover import recover as run

    print(_op(lambda cl, r: run(cl), "recover", inventory, recap=True))


@task(help={"yes": "really do it (without it nothing is touched)", "inventory": INV_HELP})
def reset(c, yes=False, inventory=None):
    """Remove the agent, its supervisor or unit, its task containers and all swarm state from
    every inventory host. Needs --yes."""
    from swarmkit_py.deploy.reset import reset as run

    _op(lambda cl, r: run(cl, yes), "reset", inventory, recap=True)


for _t in (scale, upgrade, replace, recover, reset):
    ns.add_task(_t)
