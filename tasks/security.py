"""Auto-lock: turn it on/off or rotate its key, and unlock managers after a restart.

The unlock key is never an argument (it would land in shell history and `ps`): it is written to
and read from a file (0600) named with --key-file, or typed at a prompt without echo.
"""

from __future__ import annotations

from invoke import Exit, task

from ._op import INV_HELP, names, op


@task(help={"on": "turn auto-lock on (default)", "off": "turn it off: managers restart without a key",
            "rotate": "replace the unlock key (the old one stops working for managers that apply it)",
            "key_file": "where the unlock key is written (created 0600); required with --on/--rotate",
            "inventory": INV_HELP})
def autolock(c, on=False, off=False, rotate=False, key_file=None, inventory=None):
    """Auto-lock the managers' Raft state (`docker swarm update --autolock`): a manager that
    restarts serves nothing until `invoke unlock` gives it the key, which is written to
    --key-file (0600) and never printed or logged."""
    from swarmkit_py.deploy.autolock import set_autolock

    if off and (on or rotate):
        raise Exit("autolock: --off excludes --on and --rotate", code=2)
    print(op(lambda cl, r: set_autolock(cl, not off, key_file, rotate=rotate), "autolock", inventory))


@task(help={"key_file": "file holding the unlock key (else a prompt without echo, or one line of stdin)",
            "hosts": "only these hosts: h1,h2 (default: every manager of the inventory)",
            "inventory": INV_HELP})
def unlock(c, key_file=None, hosts=None, inventory=None):
    """Unlock the managers that restarted locked (`docker swarm unlock` on each): every
    manager of the inventory is asked; locked ones get the key, others are reported as they
    are. A wrong key is refused by the manager, with no hint of the right one."""
    from swarmkit_py.deploy.autolock import read_key
    from swarmkit_py.deploy.autolock import unlock as run
    from swarmkit_py.deploy.cluster import ClusterError

    try:
        key = read_key(key_file)
    except ClusterError as e:
        raise Exit(f"unlock: {e}", code=2) from None
    only = names(hosts) if hosts else None
    result = op(lambda cl, r: run(cl, key, only), "unlock", inventory, recap=True)
    for host, outcome in (result or {}).items():
        print(f"{host}: {outcome}")
