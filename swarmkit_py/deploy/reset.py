"""`reset --yes`: remove swarmkit-py from every inventory host, as if it was never installed.

On each host, in parallel: stop the agent through its service manager (supervisor or systemd,
then the unit is disabled and removed), remove the task containers the agent started (they
carry the `com.docker.swarm.task.id` label; left behind they would keep running with nobody
managing them), then delete the releases, config, certificates, Raft state, logs and runtime
files. The operator's client bundle for this inventory goes too. The Docker engine and its
images are the host's own and are left alone. Without `--yes` nothing is touched: this
destroys the cluster's state, and a typo in `--inventory` must not do it by accident.
"""

from __future__ import annotations

import shutil

from . import agentctl as ac
from .cluster import Cluster, ClusterError
from .inventory import Host
from .runner import StepResult
from .ssh import Unreachable, fan_out

DIRS = ("swarmkit_root", "swarmkit_config_dir", "swarmkit_state_dir", "swarmkit_log_dir", "swarmkit_run_dir")
TASK_LABEL = "com.docker.swarm.task.id"


def reset(cl: Cluster, yes: bool = False) -> dict[str, str]:
    """host -> changed | ok | unreachable | failed."""
    hosts = list(cl.inv.hosts.values())
    if not yes:
        raise ClusterError(f"reset removes the agent and ALL swarm state from {len(hosts)} host(s) of "
                           f"{cl.inv.path} ({', '.join(h.name for h in hosts)}); run again with --yes to do it")
    r = cl.runner
    out = {}
    for h, res in zip(hosts, fan_out(hosts, lambda h: _reset_host(cl, h), r.forks), strict=True):
        if isinstance(res, Unreachable):
            r.record(StepResult(h.name, "reset", "unreachable", str(res)))
            out[h.name] = "unreachable"
        elif isinstance(res, Exception):
            r.record(StepResult(h.name, "reset", "failed", str(res)))
            out[h.name] = "failed"
        else:
            r.record(StepResult(h.name, "reset", "changed" if res else "ok", res or "nothing installed"))
            out[h.name] = "changed" if res else "ok"
    shutil.rmtree(cl.bundle, ignore_errors=True)
    return out


def _reset_host(cl: Cluster, h: Host) -> str:
    """What was removed ('' when the host was already clean)."""
    conn = cl.runner.conn(h)
    paths = (*(str(h.vars[k]) for k in DIRS), f"/etc/systemd/system/{h.vars['swarmkit_unit']}")
    present = conn.run("ls -d " + " ".join(ac.q(p) for p in paths) + " 2>/dev/null").stdout.split()
    done = []
    c = ac.ctx(cl, h)
    unit = h.vars["swarmkit_unit"]
    if c.facts["service_manager"] == "systemd":
        if conn.run(f"systemctl is-enabled --quiet {unit} || systemctl is-active --quiet {unit}").rc == 0:
            conn.run(f"systemctl disable --now {unit}")
            done.append("agent stopped and disabled")
    elif ac.stop(cl, h) == "stopped":
        done.append("agent stopped")
    ids = conn.run(f"docker ps -aq --filter label={TASK_LABEL} 2>/dev/null").stdout.split()
    if ids:
        conn.run("docker rm -f " + " ".join(ids))
        done.append(f"{len(ids)} task container(s) removed")
    if present:
        res = conn.run("rm -rf " + " ".join(ac.q(p) for p in present))
        if res.rc:
            raise ClusterError(f"rm -rf failed: {res.stderr.strip()}")
        if c.facts["service_manager"] == "systemd":
            conn.run("systemctl daemon-reload")
        done.append("removed " + " ".join(present))
    return "; ".join(done)
