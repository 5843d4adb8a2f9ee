"""The overlay step refuses a host without iproute2's `ip` and `bridge` (the agent programs the
overlay's links with them, worker/network/links.py) with what to install, before anything else."""

from __future__ import annotations

import subprocess

from swarmkit_py.deploy import modules
from swarmkit_py.deploy.runner import Ctx
from swarmkit_py.deploy.ssh import Result


class ShellConn:
    """Runs each command in this machine's shell with PATH set to `path`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ran: list[str] = []

    def run(self, cmd: str, timeout: float | None = 60.0, **_) -> Result:
        self.ran.append(cmd)
        r = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=timeout,
                           env={"PATH": self.path})
        return Result(r.returncode, r.stdout, r.stderr)


def test_a_host_without_iproute2_is_refused_with_what_to_install(tmp_path):
    conn = ShellConn(str(tmp_path))  # an empty directory: no ip, no bridge
    status, msg, _ = modules.overlay_ready(Ctx(host=None, conn=conn, vars={}))
    assert status == "failed" and "install the iproute2 package" in msg
    assert len(conn.ran) == 1  # nothing else looked at, nothing changed


def test_with_iproute2_the_step_goes_on_to_its_other_checks():
    conn = ShellConn("/usr/sbin:/usr/bin:/sbin:/bin")
    modules.overlay_ready(Ctx(host=None, conn=conn, vars={}, check=True))
    assert len(conn.ran) > 1 and conn.ran[1] == modules._FORWARDING
