"""What every cluster task shares: the --inventory help and running one operator session."""

from __future__ import annotations

import re

from invoke import Exit

INV_HELP = "Ansible YAML inventory (default: $SWARMKIT_INVENTORY or inventories/lab/hosts.yml)"


def op(fn, name: str, inventory=None, recap=False, **kw):
    """Run fn(cluster, runner) in an operator session; errors become a message and an exit code."""
    from swarmkit_py.deploy.session import OperatorError, session

    try:
        with session(name, inventory, recap=recap, **kw) as (cl, runner):
            return fn(cl, runner)
    except OperatorError as e:
        raise Exit(str(e), code=e.code) from None


def names(arg: str) -> list[str]:
    """Host names from 'h1,h2' or 'h1 h2'."""
    return [h for h in re.split(r"[,\s]+", arg) if h]
