"""`docker service logs` with the real CLI against real agents (a manager and a worker, both
running tasks on the machine's engine): the leader's log broker asks each node for its tasks'
logs through the sessions and the CLI prints them with Swarm's `task@node | ` prefix;
--tail, --timestamps, a single task, and -f following a replacement task."""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest

from swarmkit_py.taskimage import TASK_IMAGE
from swarmkit_py.testing.agents import DOCKER

pytestmark = pytest.mark.slow

SCRIPT = 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done'
PREFIX = re.compile(r"^(web\.\d\.\w+)@(m1|w1)\s+\| (.*)$")




def test_service_logs_from_every_node(agent_cluster):
    c, engine = agent_cluster
    m1 = c.first_manager()
    c.ready_worker("w1", m1)
    c.docker(m1, "service", "create", "-d", "--name", "web", "--replicas", "3",
             "--replicas-max-per-node", "2", TASK_IMAGE, "sh", "-c", SCRIPT)
    c.wait_for(lambda: c.docker(m1, "service", "ls", "--format", "{{.Replicas}}").stdout
               .strip().startswith("3/3"), 90, "3 replicas running")
    time.sleep(1.5)

    out = c.docker(m1, "service", "logs", "web").stdout.splitlines()
    parsed = [PREFIX.match(line) for line in out]
    assert all(parsed), out[:5]
    assert len({m.group(1) for m in parsed}) == 3
    assert {m.group(2) for m in parsed} == {"m1", "w1"}  # both nodes' sessions answered
    assert all(m.group(3).startswith("tick ") for m in parsed)

    tail = c.docker(m1, "service", "logs", "--tail", "2", "--timestamps", "web").stdout
    lines = tail.splitlines()
    assert len(lines) == 6, lines
    assert all(re.match(r"^\S+@\S+\s+\| \d{4}-\d\d-\d\dT\S+Z tick \d+$", x) or
               re.match(r"^\d{4}-\d\d-\d\dT\S+Z \S+@\S+\s+\| tick \d+$", x) for x in lines), lines

    one = PREFIX.match(out[0]).group(1)
    task_id = c.docker(m1, "service", "ps", "-q", "--no-trunc", "web").stdout.split()
    just = c.docker(m1, "service", "logs", "--tail", "3", task_id[0]).stdout.splitlines()
    assert len(just) == 3 and len({PREFIX.match(x).group(1) for x in just}) == 1
    assert one  # the prefix names a task

    env = c.docker_env(m1)
    follow = subprocess.Popen([DOCKER, "service", "logs", "-f", "--tail", "1", "web"],
                              stdout=subprocess.PIPE, text=True, env=env)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: [seen.append(x) for x in follow.stdout], daemon=True)
    reader.start()
    try:
        c.wait_for(lambda: len({PREFIX.match(x).group(1) for x in seen if PREFIX.match(x)}) == 3,
                   30, "lines of all three tasks while following")
        before = {PREFIX.match(x).group(1) for x in seen if PREFIX.match(x)}
        victim = engine.containers.list(filters={"label": "com.docker.swarm.service.name=web"})[0]
        victim.remove(force=True)  # its task fails; a replacement starts
        c.wait_for(lambda: {PREFIX.match(x).group(1) for x in seen if PREFIX.match(x)} - before,
                   90, "a line from the replacement task in the same follow stream")
        assert follow.poll() is None
    finally:
        follow.kill()
        follow.wait()
