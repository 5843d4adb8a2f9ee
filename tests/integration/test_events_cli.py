"""`docker events` with the real CLI against real agents: service create/update/remove,
secret and config create/remove, a node going down, in order, filtered by type and event,
bounded by --since/--until; and a live stream following new events."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from swarmkit_py.taskimage import TASK_IMAGE
from swarmkit_py.testing.agents import DOCKER

pytestmark = pytest.mark.slow




def _events(c, m, *args):
    out = c.docker(m, "events", "--format", "{{json .}}", *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_events_of_services_secrets_and_nodes(agent_cluster, tmp_path):
    c, _ = agent_cluster
    m1 = c.first_manager()
    w1 = c.ready_worker("w1", m1)
    t0 = f"{time.time():.9f}"

    env = c.docker_env(m1)
    live = subprocess.Popen([DOCKER, "events", "--format", "{{json .}}", "--filter",
                             "type=service"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1)  # let the stream open before the events it should see
        c.docker(m1, "service", "create", "-d", "--name", "web", "--replicas", "1",
                 TASK_IMAGE, "sleep", "3600")
        first = json.loads(live.stdout.readline())
        assert (first["Type"], first["Action"], first["Actor"]["Attributes"]["name"]) == \
            ("service", "create", "web")
    finally:
        live.kill()
        live.wait()

    c.docker(m1, "service", "update", "-d", "--replicas", "2", "web")
    c.docker(m1, "secret", "create", "s1", "-", input="v")
    c.docker(m1, "service", "rm", "web")
    c.docker(m1, "secret", "rm", "s1")
    c.kill(w1)
    c.wait_for(lambda: "w1 Down" in c.docker(m1, "node", "ls", "--format",
                                             "{{.Hostname}} {{.Status}}").stdout,
               60, "w1 down")
    t1 = f"{time.time():.9f}"

    svc = _events(c, m1, "--since", t0, "--until", t1, "--filter", "type=service")
    assert [e["Action"] for e in svc if e["Actor"]["Attributes"]["name"] == "web"][:1] == \
        ["create"]
    assert [e["Action"] for e in svc][-1] == "remove"
    upd = [e for e in svc if e["Action"] == "update" and "replicas.new" in e["Actor"]["Attributes"]]
    assert upd and upd[0]["Actor"]["Attributes"]["replicas.old"] == "1" and \
        upd[0]["Actor"]["Attributes"]["replicas.new"] == "2"
    assert all(e["scope"] == "swarm" and e["timeNano"] // 10**9 == e["time"] for e in svc)

    sec = _events(c, m1, "--since", t0, "--until", t1, "--filter", "type=secret")
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in sec] == \
        [("create", "s1"), ("remove", "s1")]

    nodes = _events(c, m1, "--since", t0, "--until", t1, "--filter", "type=node",
                    "--filter", "event=update")
    down = [e for e in nodes if e["Actor"]["Attributes"].get("state.new") == "down"]
    assert down and down[0]["Actor"]["Attributes"]["name"] == "w1"

    everything = _events(c, m1, "--since", t0, "--until", t1)
    kinds = [e["Type"] for e in everything]
    assert kinds.index("service") < kinds.index("secret") < len(kinds) - 1
    assert everything == sorted(everything, key=lambda e: e["timeNano"])
    # the CLI's default rendering
    text = c.docker(m1, "events", "--since", t0, "--until", t1, "--filter",
                    "type=secret").stdout.splitlines()
    assert text[0].split()[1:3] == ["secret", "create"] and text[0].endswith("(name=s1)")
    bad = c.docker(m1, "events", "--since", t0, "--until", t1, "--filter", "colour=red",
                   check=False)
    assert bad.returncode == 1 and "Invalid filter 'colour'" in bad.stderr
