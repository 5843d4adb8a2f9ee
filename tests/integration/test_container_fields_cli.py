"""ContainerSpec fields `docker service create` accepts reach the task's container: the real
CLI against a real agent, checked on the container the engine created (issue 12: every
accepted field does something)."""

from __future__ import annotations

import pytest

from swarmkit_py.taskimage import TASK_IMAGE

pytestmark = pytest.mark.slow


def test_hostname_workdir_user_groups_init_stop_signal_pids(agent_cluster):
    c, engine = agent_cluster
    m1 = c.first_manager()
    c.docker(m1, "service", "create", "-d", "--name", "fields", "--hostname", "box-1",
             "--workdir", "/tmp", "--user", "65534", "--group", "50", "--init",
             "--stop-signal", "SIGINT", "--limit-pids", "64", TASK_IMAGE, "sleep", "3600")

    def running():
        found = engine.containers.list(filters={"label": "com.docker.swarm.service.name=fields"})
        return found[0] if found else None

    ct = c.wait_for(running, 60, "the task's container running")
    cfg, host = ct.attrs["Config"], ct.attrs["HostConfig"]
    assert (cfg["Hostname"], cfg["WorkingDir"], cfg["User"], cfg["StopSignal"]) == \
        ("box-1", "/tmp", "65534", "SIGINT")
    assert (host["GroupAdd"], host["Init"], host["PidsLimit"]) == (["50"], True, 64)
    code, out = ct.exec_run(["sh", "-c", "hostname; pwd; id -u; id -G; cat /proc/1/cmdline"])
    lines = out.decode().split("\n")
    assert code == 0 and lines[:3] == ["box-1", "/tmp", "65534"] and "50" in lines[3].split()
    assert lines[4].startswith("/sbin/docker-init")  # --init: PID 1 is the engine's init
