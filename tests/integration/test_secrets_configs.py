"""Secrets and configs end to end: the real `docker` CLI against a real agent (manager +
worker in one process) running its tasks on the machine's Docker engine.

What a Swarm operator checks: the value never comes back out of the API; the task reads it
at /run/secrets/<name> (or its target) with the uid/gid/mode asked for; it sits on a tmpfs in
the container and nowhere on the engine's disk; a secret in use cannot be removed;
`--secret-rm` rolls the task; after the service is gone nothing of it is left on the node.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest

from swarmkit_py.taskimage import TASK_IMAGE
from swarmkit_py.worker.executor.files import LABEL_FILES_TASK

pytestmark = pytest.mark.slow




def _task_container(engine, service: str):
    found = engine.containers.list(filters={"label": f"com.docker.swarm.service.name={service}",
                                            "status": "running"})
    return found[0] if len(found) == 1 else None


def _sh(container, script: str) -> str:
    code, out = container.exec_run(["sh", "-c", script])
    assert code == 0, out.decode()
    return out.decode()


def _on_engine_disk(needle: bytes, root: str) -> list[str]:
    """Files holding `needle` on the data root's own filesystem (`-xdev`: a tmpfs mounted
    below it is memory, not disk)."""
    r = subprocess.run(["find", root, "-xdev", "-type", "f", "-exec", "grep", "-l", "-F",
                        needle.decode(), "{}", "+"], capture_output=True, text=True)
    return r.stdout.split()


def test_secret_and_config_life_cycle_with_the_cli(agent_cluster, tmp_path):
    c, engine = agent_cluster
    m1 = c.first_manager()
    value = f"pw-{secrets.token_hex(16)}"
    page = f"<h1>{secrets.token_hex(8)}</h1>"

    sid = c.docker(m1, "secret", "create", "--label", "team=db", "db_pw", "-",
                   input=value).stdout.strip()
    (tmp_path / "index.html").write_text(page)
    c.docker(m1, "config", "create", "site", str(tmp_path / "index.html"))
    ls = c.docker(m1, "secret", "ls", "--format", "{{.ID}} {{.Name}}").stdout.split()
    assert ls == [sid, "db_pw"]
    shown = c.docker(m1, "secret", "inspect", "db_pw").stdout
    assert value not in shown and '"team": "db"' in shown
    assert page in c.docker(m1, "config", "inspect", "--pretty", "site").stdout
    assert c.docker(m1, "secret", "create", "db_pw", "-", input="x", check=False).stderr \
        .strip().endswith("secret db_pw already exists")

    c.docker(m1, "service", "create", "-d", "--name", "web",
             "--secret", "db_pw",
             "--secret", "source=db_pw,target=/etc/app/pw,uid=1000,gid=1000,mode=0400",
             "--config", "source=site,target=/www/index.html",
             TASK_IMAGE, "sleep", "3600")
    ct = c.wait_for(lambda: _task_container(engine, "web"), 60, "web's task running")
    assert _sh(ct, "cat /run/secrets/db_pw") == value
    assert _sh(ct, "cat /www/index.html") == page
    assert _sh(ct, "stat -c '%u %g %a' /etc/app/pw /run/secrets/db_pw /www/index.html")\
        .split("\n")[:3] == ["1000 1000 400", "0 0 444", "0 0 444"]
    mounts = {line.split()[1]: line.split() for line in _sh(ct, "cat /proc/mounts").splitlines()}
    for path in ("/run/secrets/db_pw", "/etc/app/pw", "/www/index.html"):
        assert mounts[path][2] == "tmpfs" and "ro" in mounts[path][3].split(","), mounts[path]
    root = engine.info()["DockerRootDir"]
    assert _on_engine_disk(value.encode(), root) == []
    # the holder and its volume are gone once the task started: only the container has it
    c.wait_for(lambda: not engine.containers.list(all=True, filters={"label": LABEL_FILES_TASK})
               and not engine.volumes.list(filters={"label": LABEL_FILES_TASK}), 20,
               "the files' holder and volume removed")
    assert _sh(ct, "cat /run/secrets/db_pw") == value  # the container's own mounts stay

    rm = c.docker(m1, "secret", "rm", "db_pw", check=False)
    assert rm.returncode == 1 and \
        "secret 'db_pw' is in use by the following service: web" in rm.stderr

    old = ct.id
    c.docker(m1, "service", "update", "-d", "--secret-rm", "db_pw", "web")
    # Stop-first: the old task's `sleep` ignores SIGTERM, so the roll takes the 10 s grace,
    # then the new task's start; 60 s was short once on a 2-core machine at load 16.
    new = c.wait_for(lambda: (x := _task_container(engine, "web")) is not None and x.id != old
                     and x, 120, "web rolled to a task without the secret")
    assert "db_pw" not in _sh(new, "ls /run/secrets 2>/dev/null; cat /proc/mounts")
    assert _sh(new, "cat /www/index.html") == page

    c.docker(m1, "service", "rm", "web")
    c.wait_for(lambda: not engine.containers.list(
        all=True, filters={"label": "com.docker.swarm.service.name=web"}), 60, "web removed")
    c.docker(m1, "secret", "rm", "db_pw")
    c.docker(m1, "config", "rm", "site")
    assert c.docker(m1, "secret", "ls", "-q").stdout.strip() == ""
    assert engine.volumes.list(filters={"label": LABEL_FILES_TASK}) == []
    assert engine.containers.list(all=True, filters={"label": LABEL_FILES_TASK}) == []
