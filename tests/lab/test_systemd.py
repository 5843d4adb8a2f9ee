"""Hosts as a cloud image boots them: systemd as PID 1 and a non-root login user with sudo.

lab.up --init systemd --user deploy (2 hosts) -> bootstrap installs the agent as a systemd
unit (enabled, journald) -> verify green -> kill -9 of the agent: systemd starts it again
(Restart=on-failure) and the node is Ready -> `systemctl stop` leaves it stopped, the toolkit
starts it -> a power cut and a boot: the enabled unit brings the agent back -> the agent's
journal serves the upgrade health check -> reset disables and removes the unit.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.labkit import LAB_MARKS, invoke, operator_env, running_lab

pytestmark = LAB_MARKS


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lab_name):
    t0 = time.monotonic()
    with running_lab(tmp_path_factory.mktemp("systemd"), lab_name("systemd"), 2, user="deploy", init="systemd") as lab:
        print(f"\nlab.up --init systemd, 2 hosts with engines: {time.monotonic() - t0:.1f}s")
        yield lab


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    return operator_env(tmp_path_factory.mktemp("operator"))


def sh(lab, host, cmd) -> str:
    rc, out, err = lab.ssh(host, cmd, timeout=10)
    assert rc == 0, f"{host}: {cmd}: rc={rc} {err}"
    return out.strip()


def main_pid(lab, host) -> int:
    return int(sh(lab, host, "systemctl show -p MainPID --value swarmkit-py"))


def wait(what, cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not (v := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return v


def test_the_host_is_a_systemd_machine(lab):
    for h in ("h1", "h2"):
        assert sh(lab, h, "systemctl is-system-running --wait") == "running"
        assert sh(lab, h, "ps -o comm= -p 1") == "systemd"
        assert sh(lab, h, "systemctl is-active docker ssh") == "active\nactive"
    # the machine's own units do not run in a lab host
    assert sh(lab, "h1", "systemctl is-enabled postgresql.service containerd.service docker.socket "
                         "2>/dev/null || true").split() == ["masked"] * 3


def test_agent_as_a_systemd_unit(lab, env):
    from swarmkit_py.deploy import agentctl, inventory
    from swarmkit_py.deploy.cluster import Cluster
    from swarmkit_py.deploy.runner import Runner

    inv = lab.inventory_path
    invoke(env, "bootstrap", "--managers", "1", inventory=inv)
    for h in ("h1", "h2"):
        assert sh(lab, h, "systemctl is-enabled swarmkit-py; systemctl is-active swarmkit-py") == "enabled\nactive"
        assert "Restart=on-failure" in sh(lab, h, "systemctl cat swarmkit-py")
        assert "swarmkit-py agent" in sh(lab, h, f"tr '\\0' ' ' < /proc/{main_pid(lab, h)}/cmdline")
    v = invoke(env, "verify", inventory=inv)
    assert re.search(r"\b12 passed\b", v.stdout), v.stdout

    def ready(name):
        out = invoke(env, "status", inventory=inv).stdout
        return re.search(rf"^\W*{name}\W+\w+\W+Ready\b", out, re.M) is not None

    # kill -9: systemd restarts it (Restart=on-failure), and the node is Ready again
    old = main_pid(lab, "h2")
    sh(lab, "h2", f"kill -9 {old}")
    t0 = time.monotonic()
    new = wait("systemd to restart the agent", lambda: (p := main_pid(lab, "h2")) not in (0, old) and p, 30)
    print(f"\nkill -9 of the agent -> new agent process (pid {new}) in {time.monotonic() - t0:.2f}s")
    assert sh(lab, "h2", "systemctl show -p NRestarts --value swarmkit-py") == "1"
    wait("h2 Ready after the restart", lambda: ready("h2"))

    # a clean stop is not restarted; the toolkit starts it through systemd
    runner = Runner("t-systemd")
    cl = Cluster(inventory.load(inv), runner)
    h2 = cl.inv.hosts["h2"]
    try:
        assert agentctl.stop(cl, h2) == "stopped"
        time.sleep(3)
        assert sh(lab, "h2", "systemctl is-active swarmkit-py || true") == "inactive"
        c = agentctl.ctx(cl, h2)
        mark = agentctl.log_mark(c)
        agentctl.start(cl, h2)
        # the upgrade health check reads the agent's output from the journal
        wait("a dispatcher session in the journal since the start",
             lambda: agentctl.log_grep(c, mark, "session .* open with"), 60)
        assert not agentctl.log_grep(c, agentctl.log_mark(c), "session .* open with")
    finally:
        runner.close()

    # power cut and boot: the enabled unit brings the agent back, with no supervisor involved
    lab.crash("h2")
    lab.restart("h2")
    wait("the agent running after the boot", lambda: lab.ssh("h2", "systemctl is-active swarmkit-py")[1].strip()
         == "active", 60)
    wait("h2 Ready after its reboot", lambda: ready("h2"), 90)
    assert sh(lab, "h2", "test -e /run/swarmkit-py/supervisor.pid && echo yes || echo no") == "no"

    invoke(env, "reset", "--yes", inventory=inv)
    for h in ("h1", "h2"):
        assert sh(lab, h, "systemctl is-active swarmkit-py || true") == "inactive"
        assert sh(lab, h, "test -e /etc/systemd/system/swarmkit-py.service && echo yes || echo no") == "no"
