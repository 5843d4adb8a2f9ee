"""One operator command from start to end: load the inventory, open the log, run, report.

The invoke tasks stay one-liners around this: an inventory or cluster error becomes a clear
message and exit status 1 (no traceback), the recap is printed when steps ran, and the log
file's path is always the last line, so a failure can be explained afterwards.
"""

from __future__ import annotations

import contextlib
import sys
import time

from . import inventory
from .cluster import Cluster, ClusterError
from .runner import Runner


class OperatorError(Exception):
    """Carries the message and exit code the invoke task should end with."""

    def __init__(self, msg: str, code: int = 1):
        super().__init__(msg)
        self.code = code


@contextlib.contextmanager
def session(name: str, inv_path: str | None = None, check: bool = False, diff: bool = False,
            forks: int = 10, recap: bool = False):
    """Yields (Cluster, Runner). `recap` prints the Ansible-style recap at the end."""
    t0 = time.monotonic()
    try:
        inv = inventory.load(inv_path)
    except inventory.InventoryError as e:
        raise OperatorError(f"inventory: {e}", 2) from None
    runner = Runner(name, check=check, diff=diff, forks=int(forks))
    runner.log(f"{name}: inventory {inv.path} ({len(inv.hosts)} hosts) check={check} diff={diff}")
    failed = None
    try:
        yield Cluster(inv, runner), runner
    except (ClusterError, inventory.InventoryError) as e:
        failed = str(e)
    finally:
        took = time.monotonic() - t0
        if recap and runner.recap.counts:
            runner.recap.render(runner.console)
            runner.console.print(f"changed={runner.recap.total('changed')} failed={runner.recap.total('failed')} "
                          f"unreachable={runner.recap.total('unreachable')} in {took:.1f}s"
                          + (" (check mode: nothing was changed)" if check else ""))
        runner.log(f"{name}: done in {took:.1f}s" + (f"; error: {failed}" if failed else ""))
        # stderr: stdout of join-token and docker-env is for scripts (`eval "$(invoke docker-env)"`)
        dim = ("\033[2m", "\033[0m") if sys.stderr.isatty() else ("", "")
        print(f"{dim[0]}log: {runner.log.path}{dim[1]}", file=sys.stderr)
        runner.close()
    if failed:
        raise OperatorError(f"{name}: {failed}")
    if recap and runner.recap.total("failed"):  # Ansible's exit codes: 2 failed, 4 unreachable
        raise OperatorError(f"{name}: some hosts failed (see the recap)", 2)
    if recap and runner.recap.total("unreachable"):
        raise OperatorError(f"{name}: some hosts were unreachable (see the recap)", 4)
