"""Fixtures shared by the integration tests that drive real agents."""

from __future__ import annotations

import pytest

from swarmkit_py.testing.agents import AgentCluster


@pytest.fixture
def agent_cluster(tmp_path, docker_engine):
    """(AgentCluster in tmp_path, the machine's engine); every agent stopped and its task
    containers removed afterwards."""
    c = AgentCluster(tmp_path)
    yield c, docker_engine
    c.stop_all()
    c.remove_task_containers(docker_engine)
