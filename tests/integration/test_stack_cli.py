"""`docker stack deploy / ls / services / ps / rm` with the real CLI against a real agent:
the CLI does the compose work; what it needs from us is networks, secrets, configs and
services created with `com.docker.stack.namespace` labels, and label filters honoured."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

COMPOSE = """
version: "3.8"
services:
  web:
    image: swarmkit-py/busybox:latest
    command: ["sh", "-c", "httpd -f -p 8080 -h /www"]
    configs:
      - source: PAGE
        target: /www/index.html
    secrets: [db_pw]
    networks: [back]
    deploy:
      replicas: 2
  worker:
    image: swarmkit-py/busybox:latest
    command: ["sleep", "3600"]
    networks: [back]
  agent:
    image: swarmkit-py/busybox:latest
    command: ["sleep", "3600"]
    deploy:
      mode: global
networks:
  back:
configs:
  PAGE:
    file: ./index.html
secrets:
  db_pw:
    file: ./pw.txt
"""




def test_stack_life_cycle(agent_cluster, tmp_path, monkeypatch):
    c, engine = agent_cluster
    m1 = c.first_manager()
    (tmp_path / "compose.yml").write_text(COMPOSE.replace("PAGE", "page"))
    (tmp_path / "index.html").write_text("<h1>stack page</h1>\n")
    (tmp_path / "pw.txt").write_text("s3cr3t\n")
    monkeypatch.chdir(tmp_path)

    out = c.docker(m1, "stack", "deploy", "-c", "compose.yml", "st").stdout
    for line in ("Creating network st_back", "Creating secret st_db_pw",
                 "Creating config st_page", "Creating service st_web",
                 "Creating service st_agent"):
        assert line in out
    assert c.docker(m1, "stack", "ls", "--format", "{{.Name}} {{.Services}}").stdout.split() \
        == ["st", "3"]
    c.wait_for(lambda: sorted(c.docker(m1, "stack", "services", "st", "--format",
                                       "{{.Name}} {{.Replicas}}").stdout.splitlines())
               == ["st_agent 1/1", "st_web 2/2", "st_worker 1/1"], 120, "stack converged")
    ps = c.docker(m1, "stack", "ps", "st", "--format", "{{.Name}} {{.CurrentState}}").stdout
    assert len(ps.splitlines()) == 4 and all("Running" in x for x in ps.splitlines())
    web = engine.containers.list(filters={"label": "com.docker.swarm.service.name=st_web"})[0]
    assert web.exec_run(["cat", "/run/secrets/db_pw"]).output == b"s3cr3t\n"
    assert web.exec_run(["wget", "-qO-", "http://127.0.0.1:8080/"]).output \
        == b"<h1>stack page</h1>\n"

    # configs are immutable, as in Swarm: changed content under the same name is refused...
    (tmp_path / "index.html").write_text("<h1>changed</h1>\n")
    out = c.docker(m1, "stack", "deploy", "-c", "compose.yml", "st", check=False)
    assert out.returncode == 1 and "only updates to Labels are allowed" in out.stderr
    # ...and a new config name rolls the service onto it (the operator's versioned configs)
    (tmp_path / "compose.yml").write_text(COMPOSE.replace("PAGE", "page_v2"))
    out = c.docker(m1, "stack", "deploy", "-c", "compose.yml", "st").stdout
    assert "Creating config st_page_v2" in out and "Updating service st_web" in out

    def page() -> bytes:
        for ct in engine.containers.list(
                filters={"label": "com.docker.swarm.service.name=st_web"}):
            got = ct.exec_run(["cat", "/www/index.html"]).output
            if got != b"<h1>changed</h1>\n":
                return got
        return b"<h1>changed</h1>\n"

    c.wait_for(lambda: page() == b"<h1>changed</h1>\n" and len(engine.containers.list(
        filters={"label": "com.docker.swarm.service.name=st_web"})) == 2, 120,
               "both web tasks serve the new config")

    # One `stack rm` removes everything, networks included, as with Swarm: the CLI removes the
    # services and then at once their networks, while the tasks are still stopping.
    out = c.docker(m1, "stack", "rm", "st")
    assert "Removing network st_back" in out.stdout and not out.stderr, out
    assert c.docker(m1, "stack", "ls", "--format", "{{.Name}}").stdout.strip() == ""
    for kind in ("service", "network", "secret", "config"):
        listed = c.docker(m1, kind, "ls", "--format", "{{.Name}}").stdout.split()
        assert [n for n in listed if n.startswith("st_")] == [], (kind, listed)
    c.wait_for(lambda: not engine.containers.list(
        all=True, filters={"label": "com.docker.stack.namespace=st"}) and not [
        n for n in engine.networks.list(filters={"label": "com.swarmkit-py.network.id"})
        if n.name.startswith("st_")], 60, "the stack's containers and engine networks gone")
