"""Fixtures of tests/security; the attacker's helpers are in attack.py."""

import pytest

from swarmkit_py.testing.agents import AgentCluster


@pytest.fixture
def cluster(tmp_path):
    c = AgentCluster(tmp_path)
    yield c
    c.stop_all()
