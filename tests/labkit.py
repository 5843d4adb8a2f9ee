"""What the tests that drive a lab through `invoke` share: their marks, the operator's
environment (one pinned commit, private deploy dir and logs), and running a task."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmkit_py.deploy.lab import Lab

REPO = Path(__file__).resolve().parents[1]
INVOKE = str(REPO / ".venv" / "bin" / "invoke")

LAB_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, bridge, iptables, cgroups)"),
    pytest.mark.timeout(900),
]


def operator_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of an operator's shell for one test: builds pinned to today's HEAD
    (others committing meanwhile must not look like a change), its own client bundles and
    deploy logs under `tmp`."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    return {**os.environ, "SWARMKIT_BUILD_REF": head, "COLUMNS": "200",
            "SWARMKIT_DEPLOY_DIR": str(tmp / "operator"), "SWARMKIT_DEPLOY_LOGS": str(tmp / "deploy-logs"),
            **extra}


def invoke(env: dict, *args: str, inventory=None, check: bool = True, timeout: float = 600):
    """`invoke ARGS [--inventory INV]`; with `check`, a failure shows its output."""
    cmd = [INVOKE, *args] + (["--inventory", str(inventory)] if inventory else [])
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}")
    return r


@contextlib.contextmanager
def running_lab(tmp: Path, name: str, hosts: int, **up) -> Iterator[Lab]:
    """A lab of `hosts` hosts with engines, its state and inventory under `tmp`; always
    taken down afterwards."""
    lab = Lab(name, state_dir=tmp / "lab", inventory_path=tmp / "hosts.yml")
    try:
        lab.up(hosts, docker=True, **up)
        yield lab
    finally:
        lab.down()
