"""`invoke verify`: the testinfra checks of tests/infra against any inventory.

Run as a separate pytest process so its result is the same whether an operator types
`invoke verify` or CI runs `pytest tests/infra --inventory ...`; the inventory and the
expected release travel in the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from . import inventory, wheelhouse

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(inv_path: str | None = None, release: str | None = None, extra: list[str] | None = None) -> int:
    path = Path(inv_path) if inv_path else inventory.default_path()
    inventory.load(path)  # a broken inventory fails here, with its message, not as 20 errors
    env = {**os.environ, "SWARMKIT_INVENTORY": str(path.resolve()),
           "SWARMKIT_EXPECTED_RELEASE": release or wheelhouse.source_version()}
    cmd = [sys.executable, "-m", "pytest", str(REPO_ROOT / "tests" / "infra"), "-q", "-p", "no:cacheprovider",
           *(extra or [])]
    return subprocess.run(cmd, env=env, cwd=REPO_ROOT).returncode

