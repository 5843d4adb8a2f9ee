"""`invoke lab.*`: the local lab of SSH hosts (swarmkit_py/deploy/lab): up, down, crash,
restart, partition, heal, freeze, thaw, disk, fill-disk, free-disk, status, ssh. Needs root."""

from __future__ import annotations

import sys
import time

from invoke import Exit, task

from ._op import names as host_names

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
            "user": "login user of the inventory (default root); another name gets its own key and "
                    "sudo with a password, which the inventory reads from a file (ansible_become)",
            "init": "PID 1 of each host: tini (default; the agent runs under the role's supervisor) "
                    "or systemd (as a cloud image boots; the agent is a systemd unit)",
            "disk": "small disks for the agent's state dir from the first boot: HOST=MiB[,HOST=MiB] "
                    "(see lab.disk)",
            "name": NAME_HELP})
def up(c, hosts=7, docker=True, subnet=None, user="root", init="tini", disk="", name="lab"):
    """Start N SSH hosts on this machine (needs root). Idempotent: running hosts are left
    alone, missing or crashed ones are booted. Writes inventories/lab/hosts.yml."""
    lab = _lab(name, subnet)
    disks = {}
    for item in host_names(disk):
        h, _, mib = item.partition("=")
        if not mib.isdigit():
            raise Exit(f"lab: --disk {item!r}: give HOST=MiB, e.g. h3=64", code=2)
        disks[h] = int(mib)
    t0 = time.monotonic()
    result = _guard(lab.up, int(hosts), docker=docker, user=user, init=init, disks=disks)
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
    """Boot a crashed HOST again on its persistent disk; runs the agent role's boot hook."""
    t0 = time.monotonic()
    what = _guard(_lab(name).restart, host, wait_docker=wait_docker)
    print(f"{host}: {'already running' if what == 'running' else 'booted'} "
          f"({time.monotonic() - t0:.2f}s)")


@task(positional=["hosts"], help={"hosts": "hosts to isolate: h1,h2 (or 'h1 h2' quoted)", "name": NAME_HELP})
def partition(c, hosts, name="lab"):
    """Isolate HOSTS (e.g. `lab.partition h1,h2`) from the other lab hosts (both directions; the controller still reaches
    every host). Several calls add up; lab.heal removes them all."""
    names = host_names(hosts)
    pairs = _guard(_lab(name).partition, *names)
    print(f"partitioned {', '.join(names)} from the rest ({len(pairs)} drop rules)")


@task(help={"name": NAME_HELP})
def heal(c, name="lab"):
    """Remove every partition of the lab."""
    n = _guard(_lab(name).heal)
    print(f"healed ({n} drop rules removed)")


@task(positional=["host"], help={"host": "host to pause", "name": NAME_HELP})
def freeze(c, host, name="lab"):
    """Pause every process of HOST (cgroup freezer): it keeps its sockets and says nothing,
    like a VM paused by its hypervisor; lab.thaw resumes it."""
    took = _guard(_lab(name).freeze, host)
    print(f"{host}: frozen ({took * 1000:.0f} ms)")


@task(positional=["host"], help={"host": "host to resume", "name": NAME_HELP})
def thaw(c, host, name="lab"):
    """Resume a frozen HOST where it stopped."""
    took = _guard(_lab(name).thaw, host)
    print(f"{host}: thawed ({took * 1000:.0f} ms)")


@task(positional=["host"], help={"host": "host to give a small disk", "mib": "its size in MiB (1-4096)",
                                 "path": "where it is mounted in the host (default the agent's state dir)",
                                 "name": NAME_HELP})
def disk(c, host, mib, path=None, name="lab"):
    """Give HOST a small disk (a size-limited tmpfs that survives the host's crashes) for the
    agent's state dir, from its next boot on. Set it before installing the agent; then
    lab.fill-disk and lab.free-disk make it full and give the space back."""
    where = _guard(_lab(name).set_disk, host, int(mib), path)
    print(f"{host}: {int(mib)} MiB disk at {where}; takes effect at its next boot")


@task(name="fill-disk", positional=["host"], help={"host": "host whose small disk to fill", "name": NAME_HELP})
def fill_disk(c, host, name="lab"):
    """Fill HOST's small disk to the last byte: the agent's next write fails with ENOSPC."""
    n = _guard(_lab(name).fill_disk, host)
    print(f"{host}: disk full ({n / 2**20:.1f} MiB of filler)")


@task(name="free-disk", positional=["host"], help={"host": "host whose small disk to free", "name": NAME_HELP})
def free_disk(c, host, name="lab"):
    """Remove the filler lab.fill-disk wrote: the space comes back."""
    n = _guard(_lab(name).free_disk, host)
    print(f"{host}: {n / 2**20:.1f} MiB freed")


@task(help={"name": NAME_HELP})
def status(c, name="lab"):
    """Show each host: address, running or crashed, memory, partitions."""
    from swarmkit_py.deploy.lab.report import print_status

    _guard(print_status, _lab(name))


@task(positional=["host", "cmd"], help={"host": "host to run on", "cmd": "shell command", "name": NAME_HELP,
                                         "timeout": "seconds to wait for the connection (default 5)"})
def ssh(c, host, cmd, name="lab", timeout=5.0):
    """Run CMD on HOST over SSH as root, checking the host key against the lab's known_hosts."""
    from paramiko.ssh_exception import SSHException

    lab = _lab(name)
    try:
        rc, _out, _err = _guard(lab.ssh, host, cmd, timeout=float(timeout), hide=False)
    except (OSError, SSHException) as e:  # unreachable, crashed, refused, frozen (no banner)
        raise Exit(f"{host}: ssh failed: {e}", code=255) from None
    sys.stdout.flush()
    if rc:
        raise Exit(code=rc)
