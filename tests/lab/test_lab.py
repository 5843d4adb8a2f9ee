"""The lab end to end: real namespaces, sshd, dockerd and iptables on this machine.

Only root can build a lab; elsewhere these tests skip with that reason. Every test's traffic
goes to hosts in namespaces the test's own lab created (a private /24 derived from its name).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from swarmkit_py.deploy.lab import Lab, cgroups, net
from swarmkit_py.taskimage import TASK_IMAGE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, bridge, iptables, cgroups)"),
]

REPO = Path(__file__).resolve().parents[2]


def wait_for(what, cond, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def reachable(lab: Lab, src: str, dst: str) -> bool:
    """TCP from one lab host to another's sshd, run on `src` over SSH."""
    rc, _, _ = lab.ssh(src, f"timeout 1 bash -c '</dev/tcp/{lab.address(dst)}/22'")
    return rc == 0


def ssh_works(lab: Lab, host: str) -> bool:
    try:
        return lab.ssh(host, "true", timeout=2)[0] == 0
    except Exception:
        return False


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lab_name):
    lab = Lab(lab_name("lab"), state_dir=tmp_path_factory.mktemp("lab") / "state")
    try:
        lab.up(3, docker=True)
        yield lab
    finally:
        lab.down()


def test_hosts_answer_ssh_with_checked_keys_and_distinct_hostnames(lab):
    names = set()
    for h in lab.host_names():
        with lab.connection(h) as c:
            assert isinstance(c.client._policy, paramiko.RejectPolicy)
            names.add(c.run("hostname", hide=True, in_stream=False).stdout.strip())
    assert names == {"h1", "h2", "h3"}


def test_changed_or_unknown_host_key_is_rejected(lab, tmp_path):
    from swarmkit_py.deploy.lab import ssh

    h2_key = " ".join(lab.known_hosts.read_text().splitlines()[1].split()[1:])
    changed = tmp_path / "changed"
    changed.write_text(f"{lab.address('h1')} {h2_key}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        ssh.run(lab.address("h1"), lab.key, changed, "true")
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh.run(lab.address("h1"), lab.key, empty, "true")


def test_hosts_reach_each_other(lab):
    assert reachable(lab, "h1", "h2")
    assert reachable(lab, "h3", "h1")


def test_hosts_have_no_route_out(lab):
    rc, out, _ = lab.ssh("h1", "ip route show default; ls /sys/class/net")
    assert rc == 0
    assert "default" not in out
    # its link to the lab, loopback, and the bridge of its own engine (networking on) only
    assert sorted(out.split()) == ["docker0", "eth0", "lo"]


def test_each_host_sees_only_its_own_containers(lab):
    rc, out, err = lab.ssh("h1", f"docker run -d --name only-on-h1 {TASK_IMAGE} sleep 600")
    assert rc == 0, err
    _, ps1, _ = lab.ssh("h1", "docker ps --format '{{.Names}}'")
    _, ps2, _ = lab.ssh("h2", "docker ps -a --format '{{.Names}}'")
    assert ps1.split() == ["only-on-h1"]
    assert ps2.split() == []
    # every engine has the same image, as if pulled from one digest
    ids = {lab.ssh(h, f"docker image inspect -f '{{{{.Id}}}}' {TASK_IMAGE}")[1].strip() for h in lab.host_names()}
    assert len(ids) == 1


def test_agent_paths_are_private_per_host(lab):
    assert lab.ssh("h1", "mkdir -p /opt/swarmkit-py /etc/swarmkit-py && echo h1 > /opt/swarmkit-py/mark")[0] == 0
    assert lab.ssh("h2", "test -e /opt/swarmkit-py/mark")[0] != 0
    assert not Path("/opt/swarmkit-py/mark").exists()
    # the lab's own state (operator key, other hosts' disks) is out of the host's view
    assert lab.ssh("h2", f"test -e {lab.key}")[0] != 0


def test_crash_kills_everything_and_restart_brings_disk_back(lab):
    h1_pid = lab.init_pid("h1")
    container_pid = int(lab.ssh("h1", "docker inspect -f '{{.State.Pid}}' only-on-h1")[1].strip() or 0)
    installed = lab.ssh("h1", "printf '#!/bin/sh\\necho booted >> /var/log/autostart-ran\\n' "
                              "> /etc/swarmkit-py/autostart && chmod +x /etc/swarmkit-py/autostart")
    assert installed[0] == 0

    took = lab.crash("h1")
    assert took < 5
    assert not ssh_works(lab, "h1")
    assert lab.init_pid("h1") is None
    assert not cgroups.populated(lab.host_cgroup("h1"))
    assert not Path(f"/proc/{h1_pid}").exists()
    # the container's processes died with the host (pid is namespaced; look for any sleep 600 of ours)
    assert container_pid
    assert all(b"sleep\x00600" not in Path(f"/proc/{p}/cmdline").read_bytes()
               for p in cgroups.procs(lab.cgroup) if Path(f"/proc/{p}").exists())
    assert ssh_works(lab, "h2")

    assert lab.restart("h1") == "started"
    assert ssh_works(lab, "h1")
    assert lab.ssh("h1", "cat /opt/swarmkit-py/mark")[1].strip() == "h1"
    wait_for("the autostart hook to run", lambda: lab.ssh("h1", "cat /var/log/autostart-ran")[1].strip() == "booted")
    wait_for("h1's engine", lambda: lab.ssh("h1", "docker info >/dev/null 2>&1")[0] == 0)
    _, ps, _ = lab.ssh("h1", "docker ps -q")
    assert ps.strip() == ""  # the task container did not survive the power cut
    assert lab.restart("h1") == "running"  # idempotent


def test_partition_and_heal(lab):
    assert reachable(lab, "h1", "h2")
    lab.partition("h1")
    assert not reachable(lab, "h2", "h1")
    assert reachable(lab, "h2", "h3")
    assert ssh_works(lab, "h1")  # the controller still reaches a partitioned host
    assert lab.heal() == 4
    assert reachable(lab, "h1", "h2")
    assert reachable(lab, "h2", "h1")


def test_freeze_and_thaw(lab):
    pid = lab.init_pid("h2")
    lab.freeze("h2")
    assert [h.state for h in lab.hosts() if h.name == "h2"] == ["frozen"]
    assert not ssh_works(lab, "h2")  # sshd is paused: the banner never comes
    lab.thaw("h2")
    assert ssh_works(lab, "h2") and lab.init_pid("h2") == pid  # resumed, not rebooted


def test_up_is_idempotent_and_adds_missing_hosts(lab):
    pids = {h.name: h.pid for h in lab.hosts()}
    lab.crash("h3")
    result = lab.up(3)
    assert result == {"h1": "running", "h2": "running", "h3": "started"}
    assert {h: lab.init_pid(h) for h in ("h1", "h2")} == {h: pids[h] for h in ("h1", "h2")}
    assert ssh_works(lab, "h3")
    text = lab.inventory_path.read_text()
    assert f"ansible_host: {lab.address('h3')}" in text and str(lab.known_hosts) in text


def test_down_leaves_nothing(lab):
    bridge, tag = lab.names.bridge, lab.names.rule_tag
    lab.partition("h2")
    assert lab.down() == []
    assert net.netns_list(lab.names.netns_prefix) == []
    assert not net.link_exists(bridge)
    assert [ln for ln in subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout.splitlines()
            if tag in ln] == []
    assert not any((root / lab.names.cgroup).exists() for root in cgroups.all_hierarchies())
    assert not lab.state_dir.exists()
    assert lab.down() == []  # a second down is a no-op


def test_invoke_tasks_end_to_end(tmp_path):
    """The operator's path: the same operations through `invoke lab.*` (SSH-only hosts)."""
    name = f"i{os.getpid() % 100000}"
    env = dict(os.environ, SWARMKIT_LAB_DIR=str(tmp_path))
    inv = [sys.executable, "-m", "invoke", "-r", str(REPO)]

    def run(*args, ok=True):
        p = subprocess.run([*inv, *args, "--name", name], capture_output=True, text=True, env=env, cwd=REPO)
        assert (p.returncode == 0) == ok, (args, p.stdout, p.stderr)
        return p.stdout

    try:
        assert "2 hosts up" in run("lab.up", "--hosts", "2", "--no-docker", "--disk", "h2=4")
        # h2's agent state dir is a 4 MiB disk: full, it refuses writes; the filler survives a
        # power cut (of a frozen host, which must boot unfrozen); freed, writes work again
        state = "/var/lib/swarmkit-py"
        assert run("lab.ssh", "h2", f"hostname; echo kept > {state}/before").strip() == "h2"
        assert "disk full" in run("lab.fill-disk", "h2")
        assert "No space left" in run("lab.ssh", "h2", f"{{ echo x > {state}/during; }} 2>&1; true")
        run("lab.freeze", "h2")
        assert "frozen" in run("lab.status")
        run("lab.crash", "h2")
        assert "crashed" in run("lab.status")
        run("lab.ssh", "h2", "true", "--timeout", "1", ok=False)
        run("lab.restart", "h2")
        assert "4.0 MiB freed" in run("lab.free-disk", "h2")
        assert run("lab.ssh", "h2", f"cat {state}/before; echo x > {state}/after").strip() == "kept"
        run("lab.partition", "h1")
        run("lab.ssh", "h1", "timeout 2 bash -c '</dev/tcp/h2/22'", ok=False)
        run("lab.heal")
        run("lab.ssh", "h1", "timeout 2 bash -c '</dev/tcp/h2/22'")
    finally:
        down = subprocess.run([*inv, "lab.down", "--name", name], capture_output=True, text=True, env=env)
    assert down.returncode == 0, down.stderr
    assert "nothing left" in down.stdout
    assert str(tmp_path) not in Path("/proc/self/mounts").read_text()  # the small disk is unmounted
