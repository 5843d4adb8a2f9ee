"""The deployment toolkit end to end on a real lab, through the real `invoke` commands.

lab.up 4 hosts -> bootstrap --managers 3 -> 3 managers (one Leader) + 1 worker, all Ready ->
a second bootstrap changes nothing -> --check --diff of a changed template shows the diff and
changes nothing -> promote/demote/drain/activate -> testinfra `verify` green -> no secret in
the deploy logs.

Twice: with the lab's root login, and with a login user `deploy` that becomes root through
sudo with a password (`lab.up --user deploy`: ansible_become, ansible_become_password read from
a file by the inventory), as on a cloud image.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.labkit import LAB_MARKS, invoke, operator_env, running_lab

pytestmark = LAB_MARKS
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


@pytest.fixture(scope="module", params=["root", "deploy"], ids=["login-root", "login-deploy-sudo"])
def lab(request, tmp_path_factory, lab_name):
    with running_lab(tmp_path_factory.mktemp("deploy"), lab_name("deploy"), 4, user=request.param) as lab:
        yield lab


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    return operator_env(tmp_path_factory.mktemp("operator"))


def changed(out: str) -> int:
    return int(re.findall(r"^changed=(\d+) failed=", out, re.M)[-1])


def node_ls(env, inv) -> dict[str, list[str]]:
    exports = invoke(env, "docker-env", inventory=inv).stdout
    denv = {**env, "DOCKER_CONFIG": str(Path(env["SWARMKIT_DEPLOY_DIR"]) / "docker-config")}
    for k, v in re.findall(r"^export (\w+)=(.*)$", exports, re.M):
        denv[k] = v
    r = subprocess.run([DOCKER, "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}} "
                        "{{.ManagerStatus}}"], env=denv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return {p[0]: p[1:] for p in (line.split() for line in r.stdout.splitlines())}


def test_bootstrap_idempotence_check_node_ops_and_verify(lab, env, tmp_path):
    inv = lab.inventory_path
    t0 = time.monotonic()
    first = invoke(env, "bootstrap", "--managers", "3", inventory=inv)
    took = time.monotonic() - t0
    assert changed(first.stdout) > 0
    rows = node_ls(env, inv)
    assert sorted(rows) == ["h1", "h2", "h3", "h4"]
    assert all(r[0] == "Ready" for r in rows.values()), rows
    assert sorted(r[2] for r in rows.values() if len(r) > 2) == ["Leader", "Reachable", "Reachable"], rows
    assert len(rows["h4"]) == 2, "h4 is the worker"

    t0 = time.monotonic()
    again = invoke(env, "bootstrap", "--managers", "3", inventory=inv)
    rerun = time.monotonic() - t0
    assert changed(again.stdout) == 0, again.stdout
    print(f"\nbootstrap --managers 3 on 4 hosts: {took:.1f}s; idempotent re-run: {rerun:.1f}s")

    # --check --diff with a template input changed in the inventory: a diff, nothing changed
    doc = yaml.safe_load(inv.read_text())
    doc["all"]["vars"]["swarmkit_log_level"] = "DEBUG"
    inv2 = tmp_path / "hosts-debug.yml"
    inv2.write_text(yaml.safe_dump(doc))
    before = lab.ssh("h2", "cat /etc/swarmkit-py/agent.yml")[1]
    chk = invoke(env, "bootstrap", "--managers", "3", "--check", "--diff", inventory=inv2)
    assert "-log_level: INFO" in chk.stdout and "+log_level: DEBUG" in chk.stdout, chk.stdout
    assert "check mode: nothing was changed" in chk.stdout
    assert changed(chk.stdout) == 8  # each host: its agent.yml, and the agent restart that would follow
    assert chk.stdout.count("restart deferred to a rolling restart") == 4
    assert lab.ssh("h2", "cat /etc/swarmkit-py/agent.yml")[1] == before

    # guarded node operations through invoke
    assert invoke(env, "join-token", "worker", inventory=inv).stdout.startswith("SWMTKN-")
    invoke(env, "promote", "h4", inventory=inv)
    assert node_ls(env, inv)["h4"][2] == "Reachable"
    invoke(env, "demote", "h4", inventory=inv)
    assert len(node_ls(env, inv)["h4"]) == 2
    invoke(env, "drain", "h4", inventory=inv)
    assert node_ls(env, inv)["h4"][1] == "Drain"
    invoke(env, "activate", "h4", inventory=inv)
    assert node_ls(env, inv)["h4"][1] == "Active"
    bad = invoke(env, "promote", "h9", inventory=inv, check=False)
    assert bad.returncode != 0 and "no host 'h9'" in bad.stderr + bad.stdout

    v = invoke(env, "verify", inventory=inv)
    assert re.search(r"\b24 passed\b", v.stdout), v.stdout

    # the deploy logs explain every command, and show no secret
    secrets = [invoke(env, "join-token", role, inventory=inv).stdout.strip() for role in ("worker", "manager")]
    if lab.login_user != "root":
        secrets.append(lab.login_password.read_text().strip())
    logs = list(Path(env["SWARMKIT_DEPLOY_LOGS"]).glob("*.log"))
    text = "".join(p.read_text() for p in logs)
    assert len(logs) >= 10 and "swarmkit-py join --token ********" in text
    for s in secrets:
        assert s.startswith("SWMTKN-") or lab.login_user != "root"
        assert s not in text, "a secret in the deploy log"
    assert "PRIVATE KEY" not in text


def test_login_user_is_not_root_and_its_key_does_not_open_root(lab):
    if lab.login_user == "root":
        pytest.skip("the root-login lab")
    from swarmkit_py.deploy import inventory
    from swarmkit_py.deploy.ssh import BecomeError, HostConn, Unreachable

    h = inventory.load(lab.inventory_path).hosts["h1"]
    assert (h.user, h.become) == ("deploy", True)
    assert HostConn(h).run("id -un").stdout.strip() == "root"  # through sudo
    with pytest.raises(Unreachable, match="Authentication failed"):
        HostConn(h.model_copy(update={"user": "root", "become": False})).run("true")
    wrong = h.model_copy(update={"vars": {**h.vars, "ansible_become_password": "not-the-password"}})
    with pytest.raises(BecomeError, match="sudo as deploy refused"):
        HostConn(wrong).run("true")
