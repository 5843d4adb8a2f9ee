"""The real `docker` CLI (28.x) driving services against our API: create, ls, inspect, ps,
scale, update, rollback, rm.

No orchestrator runs here: the test writes the tasks the orchestrator, scheduler and worker
would have written, straight into the store (on the server's loop), so what is checked is the
API's half: request shapes, status codes, and what the CLI renders from our answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

from swarmkit_py.store import Task, Transaction, new_id
from tests.integration import test_api_cli as base
from tests.integration.test_api_cli import Server

pytestmark = base.pytestmark
server = base.server  # the API on 127.0.0.1:<free port> over a 3-manager, 2-worker store
cli = base.cli  # runs the real docker CLI with an empty DOCKER_CONFIG against `server`

IMAGE = "local/busybox:1"


def add_tasks(srv: Server, name: str, slots, state="running", desired="running"):
    """Tasks for `slots` of service `name`, on the workers in turn, as if running."""

    def write(s):
        svc = s.store.view().lookup("service", name)
        tx = Transaction()
        for slot in slots:
            tx.create(
                Task.model_validate(
                    {
                        "ID": new_id(),
                        "ServiceID": svc.id,
                        "Slot": slot,
                        "NodeID": s.workers[slot % len(s.workers)],
                        "Spec": svc.spec.task_template.to_wire(),
                        "DesiredState": desired,
                        "Status": {"State": state, "Message": "started",
                                   "Timestamp": "2026-01-01T00:00:00Z"},
                    }
                )
            )
        s.store.apply(s.store.applied_index + 1, tx.encode())

    srv.read(write)


def service(srv: Server, name: str):
    return srv.read(lambda s: s.store.view().lookup("service", name))


def test_service_life_cycle_with_the_cli(server, cli):
    out = cli("service", "create", "-d", "--name", "web", "--replicas", "3", IMAGE,
              "sleep", "3600").stdout.strip()
    svc = service(server, "web")
    assert out == svc.id
    assert svc.spec.mode.replicated.replicas == 3
    assert svc.spec.task_template.container_spec.args == ["sleep", "3600"]

    proc = cli("service", "create", "-d", "--name", "web", IMAGE, ok=False)
    assert proc.returncode == 1 and "service web already exists" in proc.stderr

    add_tasks(server, "web", [1, 2, 3])
    ls = cli("service", "ls").stdout.splitlines()
    assert len(ls) == 2 and "web" in ls[1] and "3/3" in ls[1] and "replicated" in ls[1]
    assert IMAGE in ls[1]

    data = json.loads(cli("service", "inspect", "web").stdout)[0]
    assert data["ID"] == svc.id
    assert data["Spec"]["UpdateConfig"]["Parallelism"] == 1  # insertDefaults=true
    pretty = cli("service", "inspect", "--pretty", "web").stdout
    assert "Service Mode:\tReplicated" in pretty and " Replicas:\t3" in pretty
    proc = cli("service", "inspect", "nosuch", ok=False)
    assert proc.returncode == 1 and "no such service: nosuch" in proc.stderr.lower()

    ps = cli("service", "ps", "web").stdout.splitlines()
    assert len(ps) == 4, ps
    names = sorted(line.split()[1] for line in ps[1:])
    assert names == ["web.1", "web.2", "web.3"]
    assert all("Running" in line for line in ps[1:])
    assert any("w1" in line or "w2" in line for line in ps[1:])

    cli("service", "scale", "-d", "web=5")
    scaled = service(server, "web")
    assert scaled.spec.mode.replicated.replicas == 5
    assert scaled.previous_spec is None and scaled.update_status is None
    assert scaled.spec.task_template == svc.spec.task_template

    cli("service", "update", "-d", "--image", "local/busybox:2", "web")
    updated = service(server, "web")
    assert updated.spec.task_template.container_spec.image == "local/busybox:2"
    assert updated.previous_spec.task_template.container_spec.image == IMAGE
    assert updated.spec.mode.replicated.replicas == 5

    cli("service", "rollback", "-d", "web")
    rolled = service(server, "web")
    assert rolled.spec.task_template.container_spec.image == IMAGE
    assert rolled.previous_spec.task_template.container_spec.image == "local/busybox:2"
    assert rolled.update_status.state == "rollback_started"
    assert rolled.update_status.message == "manually requested rollback"
    ls = cli("service", "ls").stdout
    assert IMAGE in ls

    assert cli("service", "rm", "web").stdout.strip() == "web"
    assert server.read(lambda s: s.store.view().count("service")) == 0
    proc = cli("service", "rm", "web", ok=False)
    assert proc.returncode == 1 and "service web not found" in proc.stderr


def test_service_ps_shows_pending_error_and_history(server, cli):
    cli("service", "create", "-d", "--name", "api", "--replicas", "2", IMAGE)
    add_tasks(server, "api", [1], state="shutdown", desired="shutdown")
    add_tasks(server, "api", [1, 2])
    ps = cli("service", "ps", "api").stdout.splitlines()
    assert len(ps) == 4 and sum("\\_ api.1" in line for line in ps) == 1, ps
    running = cli("service", "ps", "-f", "desired-state=running", "-q", "api").stdout.split()
    assert len(running) == 2


def test_service_create_with_published_port_and_constraint(server, cli):
    cli("service", "create", "-d", "--name", "pweb", "-p", "8080:80",
        "--constraint", "node.role==worker", IMAGE)
    svc = service(server, "pweb")
    assert svc.spec.task_template.placement.constraints == ["node.role==worker"]
    data = json.loads(cli("service", "inspect", "pweb").stdout)[0]
    assert data["Endpoint"]["Ports"][0]["PublishedPort"] == 8080
    pweb = [line for line in cli("service", "ls").stdout.splitlines() if "pweb" in line]
    assert "*:8080->80/tcp" in pweb[0]
    proc = cli("service", "create", "-d", "--name", "bad", "--constraint", "node.role", IMAGE,
               ok=False)
    assert proc.returncode == 1 and "constraint expected one operator" in proc.stderr


def test_cli_waits_for_up_to_date_tasks_to_converge(server, cli, tmp_path):
    """Without -d the CLI polls /services/{id}, /tasks?filters={"_up-to-date":...} and /nodes
    until the new template's tasks run. Old tasks still running must not count: only once the
    test writes tasks of the new template does the CLI print `converged`."""
    cli("service", "create", "-d", "--name", "conv", "--replicas", "2",
        "--update-monitor", "200ms", IMAGE)
    add_tasks(server, "conv", [1, 2])
    proc = subprocess.Popen(
        [base.DOCKER, "-H", server.url, "service", "update", "--image", "local/busybox:2", "conv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, DOCKER_CONFIG=str(tmp_path / "docker-config")),
    )
    # The old tasks run the whole time: the CLI must still be waiting after a few polls.
    time.sleep(1.5)
    assert proc.poll() is None, proc.communicate()
    threading.Thread(target=add_tasks, args=(server, "conv", [1, 2])).start()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "converged" in out, out
