"""Fixtures shared across test layers. Keep this small: layer-specific fixtures live with them."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker client for the machine's engine, started if needed, holding the task image.

    The engine is left running afterwards: it is the machine's, shared by later sessions.
    """
    import docker

    proc = subprocess.run([str(ROOT / "scripts" / "docker-up.sh")], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"scripts/docker-up.sh failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="session")
def lab_name():
    """`lab_name(kind)`: the name for a test's lab. $SWARMKIT_TEST_LAB wins (engineers sharing
    one machine are each given lab names of their own); else one per process and kind."""

    def name(kind: str) -> str:
        return os.environ.get("SWARMKIT_TEST_LAB") or f"t-{kind}-{os.getpid() % 10000}"

    return name
