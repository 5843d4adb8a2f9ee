"""Auto-lock after a power loss, on a real 3-host lab, through the real `invoke` commands.

The inventory logs in as `deploy`, which becomes root through sudo with a password
(`lab.up --user deploy`), so the unlock key travels on stdin right after sudo's password.

bootstrap --managers 3 -> `invoke autolock --key-file` and `bootstrap --autolock` (key 0600, never
in the output or the deploy logs) -> a node label as a canary -> no manager's disk holds the
canary, the CA key, the unlock key or its TLS key in clear (grep of the bytes, with a positive
control) -> power cut of all three managers at once -> they boot locked and serve nothing but the
unlock call -> `invoke unlock` with a wrong key is refused without a hint -> `invoke unlock
--key-file` (the key reaches each host on the stdin of `swarmkit-py unlock`, after sudo's
password: sampled `ps` listings, the deploy log, the host's logs and shell history never show
it) -> a leader again, the canary intact.

With SWARMKIT_LONG_TESTS=1 (about 45 s more): h2 and h3 lost for good, `invoke recover
--key-file` stops h1, reads and recovers its sealed log, the key again on stdin only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from swarmkit_py.testing.agents import AgentCluster
from tests.labkit import LAB_MARKS, invoke, operator_env, running_lab

pytestmark = LAB_MARKS

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
CANARY = "lab-autolock-canary-51d2"
LOCKED = "Swarm is encrypted and needs to be unlocked before it can be used."
RAFT = "/var/lib/swarmkit-py/raft"
MANAGERS = ("h1", "h2", "h3")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lab_name):
    with running_lab(tmp_path_factory.mktemp("autolock"), lab_name("autolock"), 3, user="deploy") as lab:
        yield lab


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    return operator_env(tmp_path_factory.mktemp("operator"))


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory):
    """Where `invoke autolock` writes the unlock key (shared by the tests of this module)."""
    return tmp_path_factory.mktemp("key") / "unlock.key"


def log_text(r: subprocess.CompletedProcess) -> str:
    """The deploy log the command wrote (its path is the last line on stderr)."""
    m = re.search(r"log: (\S+\.log)", r.stderr)
    assert m, r.stderr
    return Path(m.group(1)).read_text()


def docker_env(env, inv) -> dict:
    exports = invoke(env, "docker-env", inventory=inv).stdout
    denv = {**env, "DOCKER_CONFIG": str(Path(env["SWARMKIT_DEPLOY_DIR"]) / "docker-config")}
    for k, v in re.findall(r"^export (\w+)=(.*)$", exports, re.M):
        denv[k] = v.strip("'\"")
    return denv


def docker(denv, *args, host=None) -> subprocess.CompletedProcess:
    if host is not None:
        denv = {**denv, "DOCKER_HOST": host}
    return subprocess.run([DOCKER, *args], env=denv, capture_output=True, text=True, timeout=30)


def raft_grep(lab, h: str, needle: str) -> int:
    """How many of the host's WAL segments and snapshots contain `needle` (grep -a on the bytes)."""
    rc, out, err = lab.ssh(h, f"grep -a -l -F -e {needle!r} {RAFT}/wal-*.log {RAFT}/snap-*.snap 2>/dev/null | wc -l")
    assert rc == 0, err
    return int(out.strip())


def wait(what, cond, timeout):
    return AgentCluster.wait_for(cond, timeout, f"timed out waiting for {what}", interval=0.5)


NODE_KEY = "/var/lib/swarmkit-py/certs/swarm-node.key"
PEM_KEY_HEADER = "-----BEGIN (EC |RSA )?PRIVATE KEY-----"


def key_in_clear(lab, h: str) -> bool:
    """A PEM private key header in the bytes of the node's TLS key file."""
    rc, out, err = lab.ssh(h, f"grep -a -c -E -e {PEM_KEY_HEADER!r} {NODE_KEY} || true")
    assert rc == 0, err
    return out.strip() != "0"


def assert_key_only_on_stdin(lab, h: str, key: str, commands: list[str]) -> None:
    """What the ps sampler saw on `h` holds `commands` (its positive control: it sampled while
    they ran) and never the key; no log file, history or temp file on `h` holds it either."""
    rc, samples, _ = lab.ssh(h, "cat /tmp/ps-samples; rm -f /tmp/ps-samples", timeout=30)
    for cmd in commands:
        assert cmd in samples, f"the ps sampler on {h} never saw {cmd!r}: it proves nothing"
    assert key[9:] not in samples, f"the unlock key on a command line on {h}"
    rc, out, _ = lab.ssh(h, f"grep -r -a -l -F -e {key[9:]!r} /var/log /root /home /tmp 2>/dev/null | wc -l")
    assert out.strip() == "0", f"the unlock key in a log file, a shell history or a temp file on {h}"


def start_ps_sampler(lab, h: str) -> int:
    """Every 20 ms, every process's command line on `h` appended to /tmp/ps-samples."""
    rc, out, err = lab.ssh(h, "setsid sh -c 'while :; do ps -eo args >> /tmp/ps-samples; sleep 0.02; done' "
                              ">/dev/null 2>&1 </dev/null & echo $!")
    assert rc == 0, err
    return int(out.strip())


def test_lock_power_cut_refuse_until_unlocked(lab, env, keyfile, tmp_path):
    inv = lab.inventory_path
    invoke(env, "bootstrap", "--managers", "3", inventory=inv)
    # The CA key as the agent exports it while auto-lock is off: the needle for the grep below
    # (and its positive control: the same grep finds it in that file).
    rc, ca_key, _ = lab.ssh("h1", "sed -n 2p /var/lib/swarmkit-py/certs/swarm-root-ca.key")
    ca_line = ca_key.strip()
    assert rc == 0 and len(ca_line) > 40
    assert lab.ssh("h1", f"grep -c -F -e {ca_line!r} /var/lib/swarmkit-py/certs/swarm-root-ca.key")[1].strip() == "1"

    assert all(key_in_clear(lab, h) for h in MANAGERS)  # the grep's positive control

    on = invoke(env, "autolock", "--key-file", str(keyfile), inventory=inv)
    key = keyfile.read_text().strip()
    assert key.startswith("SWMKEY-1-") and keyfile.stat().st_mode & 0o777 == 0o600
    assert key not in on.stdout + on.stderr and key not in log_text(on)
    # bootstrap --autolock on the running cluster: idempotent, and no key in its output or log
    keyfile2 = tmp_path / "unlock2.key"
    boot = invoke(env, "bootstrap", "--managers", "3", "--autolock", str(keyfile2), inventory=inv)
    assert keyfile2.read_text().strip() == key
    assert key not in boot.stdout + boot.stderr and key not in log_text(boot)

    denv = docker_env(env, inv)
    port = denv["DOCKER_HOST"].rpartition(":")[2]
    host_of = {h: f"tcp://{lab.address(h)}:{port}" for h in MANAGERS}
    r = docker(denv, "node", "update", "--label-add", f"canary={CANARY}", "h1")
    assert r.returncode == 0, r.stderr
    assert "Autolock Managers: true" in docker(denv, "info").stdout

    # Every manager re-wrapped its keys (no key file left), re-encrypted with a new data key and
    # dropped its exported copy of the CA key.
    for h in MANAGERS:
        wait(f"{h}: keys sealed by the unlock key, CA key file gone",
             lambda h=h: lab.ssh(h, f"test ! -e {RAFT}/kek && grep -q unlock-key {RAFT}/deks.json && "
                                    "test ! -e /var/lib/swarmkit-py/certs/swarm-root-ca.key")[0] == 0, 30)
    wait("the canary replicated", lambda: all(
        docker(denv, "node", "inspect", "h1", "--format", "{{.Spec.Labels.canary}}", host=host_of[h]).stdout.strip()
        == CANARY for h in MANAGERS), 30)
    # Every manager's TLS key sealed by the unlock key (Swarm: "the TLS key used to communicate
    # among swarm nodes and the key used to encrypt and decrypt Raft logs").
    for h in MANAGERS:
        wait(f"{h}: TLS key sealed", lambda h=h: not key_in_clear(lab, h), 30)
    # No plaintext on disk: the canary label, the CA key, the unlock key.
    for h in MANAGERS:
        assert raft_grep(lab, h, CANARY) == 0
        assert raft_grep(lab, h, ca_line) == 0
        assert raft_grep(lab, h, key[9:]) == 0
        rc, out, _ = lab.ssh(h, f"grep -r -a -l -F -e {ca_line!r} /var/lib/swarmkit-py | wc -l")
        assert out.strip() == "0", f"{h}: the CA key in clear somewhere under /var/lib/swarmkit-py"

    # Power cut of every manager at once, then boot them again.
    for h in MANAGERS:
        lab.crash(h)
    for h in MANAGERS:
        lab.restart(h)
    for h in MANAGERS:
        r = wait(f"{h} answers, locked", lambda h=h: (x := docker(denv, "node", "ls", host=host_of[h])).stderr
                 and LOCKED in x.stderr and x, 90)
        assert 'Please use "docker swarm unlock" to unlock it.' in r.stderr
        assert docker(denv, "service", "ls", host=host_of[h]).returncode == 1
    assert "Swarm: locked" in docker(denv, "info", host=host_of["h2"]).stdout
    assert not any(key_in_clear(lab, h) for h in MANAGERS)  # locked: the node key is still sealed

    wrong = tmp_path / "wrong.key"
    wrong.write_text("SWMKEY-1-" + "A" * 43 + "\n")
    wrong.chmod(0o600)
    bad = invoke(env, "unlock", "--key-file", str(wrong), inventory=inv, check=False)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "swarm could not be unlocked: invalid key provided" in bad.stdout
    assert key not in bad.stdout + bad.stderr + log_text(bad)
    assert LOCKED in docker(denv, "node", "ls", host=host_of["h1"]).stderr

    t0 = time.monotonic()
    sampler = start_ps_sampler(lab, "h1")
    try:
        ok = invoke(env, "unlock", "--key-file", str(keyfile), inventory=inv)
    finally:
        lab.ssh("h1", f"kill {sampler}")
    assert ok.stdout.count("unlocked") >= 3, ok.stdout
    assert key not in ok.stdout + ok.stderr + log_text(ok)
    assert_key_only_on_stdin(lab, "h1", key, ["swarmkit-py unlock --wait"])
    rows = wait("a leader and three Reachable/Leader managers", lambda: (
        (out := docker(denv, "node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}").stdout)
        and out.count("Leader") == 1 and out.count("Reachable") == 2 and out), 60)
    took = time.monotonic() - t0
    assert set(line.split()[0] for line in rows.splitlines()) == set(MANAGERS)
    assert docker(denv, "node", "inspect", "h1", "--format", "{{.Spec.Labels.canary}}").stdout.strip() == CANARY
    again = invoke(env, "unlock", "--key-file", str(keyfile), inventory=inv)
    assert "not locked" in again.stdout
    print(f"\nautolock lab: 3 managers power-cut, unlocked with `invoke unlock` and led again in {took:.1f}s")


@pytest.mark.skipif(not os.environ.get("SWARMKIT_LONG_TESTS"), reason="about 45 s more of lab time: set SWARMKIT_LONG_TESTS=1")
def test_recover_a_locked_survivor_with_the_key_on_stdin(lab, env, keyfile):
    """After the test above (a 3-manager auto-locked cluster, led, the canary on h1): h2 and h3
    lost for good, `invoke recover --key-file` rebuilds the cluster from h1's sealed log."""
    inv = lab.inventory_path
    if not keyfile.exists():
        pytest.skip("needs the auto-locked cluster of test_lock_power_cut_refuse_until_unlocked")
    key = keyfile.read_text().strip()
    denv = docker_env(env, inv)
    port = denv["DOCKER_HOST"].rpartition(":")[2]
    host_of = {h: f"tcp://{lab.address(h)}:{port}" for h in MANAGERS}
    # h2 and h3 lost for good: no quorum. `invoke recover` must stop h1, read its sealed log
    # and rebuild the cluster from it; the key reaches h1 on stdin only.
    for h in ("h2", "h3"):
        lab.crash(h)
    sampler = start_ps_sampler(lab, "h1")
    try:
        t0 = time.monotonic()
        rec = invoke(env, "recover", "--key-file", str(keyfile), inventory=inv)
        took = time.monotonic() - t0
    finally:
        lab.ssh("h1", f"kill {sampler}")
    assert "recovered from h1" in rec.stdout, rec.stdout
    assert docker(denv, "node", "inspect", "h1", "--format", "{{.Spec.Labels.canary}}",
                  host=host_of["h1"]).stdout.strip() == CANARY
    assert key not in rec.stdout + rec.stderr and key[9:] not in log_text(rec)
    assert "--unlock-key-stdin" in log_text(rec)
    assert_key_only_on_stdin(lab, "h1", key, ["log-position", "--force-new-cluster --unlock-key-stdin"])
    # auto-lock still on for the recovered cluster: h1 seals its state and TLS key again
    wait("h1 sealed again", lambda: not key_in_clear(lab, "h1") and lab.ssh(
        "h1", f"grep -q unlock-key {RAFT}/deks.json")[0] == 0, 30)
    print(f"autolock lab: h2, h3 lost, h1 recovered with `invoke recover --key-file` in {took:.1f}s")
