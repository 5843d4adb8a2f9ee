"""`docker service logs` with the real CLI against real agents (a manager and a worker, both
running tasks on the machine's engine), read through the *follower*: the worker is promoted,
and every `docker service logs` goes to it, so each line crosses worker session -> leader's
broker -> managers' mTLS -> the follower's API. The CLI prints Swarm's `task@node | ` prefix;
stdout and stderr come out on the CLI's own stdout and stderr; --tail, --timestamps, a single
task; -f follows a replacement task and then a leader change (the leader is demoted: the
follower the CLI reads from becomes the leader) without repeating or losing a line."""

from __future__ import annotations

import re
import subprocess
import threading

import pytest

from swarmkit_py.taskimage import TASK_IMAGE
from swarmkit_py.testing.agents import DOCKER

pytestmark = pytest.mark.slow

SCRIPT = ('i=0; while true; do echo "tick $i"; [ $((i % 3)) = 0 ] && echo "oops $i" >&2; '
          'i=$((i+1)); sleep 0.2; done')
PREFIX = re.compile(r"^(web\.\d\.\w+)@(m1|w1)\s+\| (.*)$")


def parsed(lines: list[str]) -> list[re.Match]:
    return [m for m in map(PREFIX.match, lines) if m]


def ticks_in_order(lines: list[str]) -> dict[str, list[int]]:
    """task -> its tick numbers in the order printed."""
    out: dict[str, list[int]] = {}
    for m in parsed(lines):
        if m.group(3).startswith("tick "):
            out.setdefault(m.group(1), []).append(int(m.group(3).split()[1]))
    return out


def test_service_logs_through_a_follower_across_a_restart_and_a_leader_change(agent_cluster):
    c, engine = agent_cluster
    m1 = c.first_manager()
    w1 = c.ready_worker("w1", m1)
    c.docker(m1, "service", "create", "-d", "--name", "web", "--replicas", "3",
             "--replicas-max-per-node", "2", "--stop-grace-period", "1s",  # sh ignores TERM
             TASK_IMAGE, "sh", "-c", SCRIPT)
    c.docker(m1, "node", "promote", "w1")
    c.wait_for(lambda: c.docker(w1, "node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}")
               .stdout.split().count("Reachable") == 1, 40, "w1 a manager serving the API")
    c.wait_for(lambda: c.docker(w1, "service", "ls", "--format", "{{.Replicas}}").stdout
               .strip().startswith("3/3"), 90, "3 replicas running")
    c.wait_for(lambda: len(ticks_in_order(c.docker(w1, "service", "logs", "web").stdout
                                          .splitlines())) == 3, 30, "lines of all 3 tasks")

    r = c.docker(w1, "service", "logs", "web")
    out, err = parsed(r.stdout.splitlines()), parsed(r.stderr.splitlines())
    assert len(out) == len(r.stdout.splitlines()), r.stdout[:300]
    assert len({m.group(1) for m in out}) == 3
    assert {m.group(2) for m in out} == {"m1", "w1"}  # both nodes' sessions answered
    assert all(m.group(3).startswith("tick ") for m in out)
    assert err and all(m.group(3).startswith("oops ") for m in err), r.stderr[:300]

    tail = c.docker(w1, "service", "logs", "--tail", "2", "--timestamps", "web").stdout
    lines = tail.splitlines()
    assert lines and len(lines) <= 6, lines  # the last 2 of each task, stdout's share here
    assert all(re.match(r"^\S+@\S+\s+\| \d{4}-\d\d-\d\dT\S+Z tick \d+$", x) or
               re.match(r"^\d{4}-\d\d-\d\dT\S+Z \S+@\S+\s+\| tick \d+$", x) for x in lines), lines

    task_id = c.docker(w1, "service", "ps", "-q", "--no-trunc", "web").stdout.split()
    just = c.docker(w1, "service", "logs", "--tail", "3", task_id[0])
    assert len(just.stdout.splitlines()) + len(just.stderr.splitlines()) == 3
    assert len({m.group(1) for m in parsed(just.stdout.splitlines())}) == 1

    follow = subprocess.Popen([DOCKER, "service", "logs", "-f", "--tail", "1", "web"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=c.docker_env(w1))
    seen: list[str] = []
    reader = threading.Thread(target=lambda: [seen.append(x) for x in follow.stdout], daemon=True)
    reader.start()
    try:
        c.wait_for(lambda: len(ticks_in_order(seen)) == 3, 30, "all 3 tasks while following")
        before = set(ticks_in_order(seen))
        victim = engine.containers.list(filters={"label": "com.docker.swarm.service.name=web"})[0]
        victim.remove(force=True)  # its task fails; a replacement starts
        c.wait_for(lambda: set(ticks_in_order(seen)) - before, 90,
                   "a line from the replacement task in the same follow stream")

        # the leader is demoted: it hands leadership to w1, whose API the CLI reads from
        c.docker(w1, "node", "demote", "m1")
        c.wait_for(lambda: "w1 Leader" in c.docker(w1, "node", "ls", "--format",
                                                   "{{.Hostname}} {{.ManagerStatus}}").stdout,
                   30, "w1 leads")
        at_change = {t: n[-1] for t, n in ticks_in_order(seen).items()}
        live = {m.labels["com.docker.swarm.task.id"] for m in engine.containers.list(
            filters={"label": "com.docker.swarm.service.name=web"})}
        c.wait_for(lambda: sum(1 for t, n in ticks_in_order(seen).items()
                               if n[-1] > at_change.get(t, -1) + 3) >= len(live), 60,
                   "lines of every running task after the leader change")
        assert follow.poll() is None
        for task, numbers in ticks_in_order(seen).items():  # none repeated, none skipped
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), (task, numbers)
    finally:
        follow.kill()
        follow.wait()
