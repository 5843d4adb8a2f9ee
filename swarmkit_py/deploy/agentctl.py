"""The agent's process on one host, driven over SSH: start, stop, restart, which release runs,
and the cluster's view of that host (Ready? a Reachable voter?).

The life-cycle operations (upgrade, replace, recover, reset, scale) all need these few verbs;
they go through the same service manager the agent role installed (systemd, or the supervisor
fallback), so the supervisor never fights an operator-side kill and a host that reboots later
comes back in the state the operation left it in.
"""

from __future__ import annotations

import re
import shlex

from . import modules
from .cluster import Cluster, ClusterError, wait_for
from .inventory import Host
from .roles import gather_facts, host_ctx
from .runner import Ctx


def root(h: Host) -> str:
    return str(h.vars["swarmkit_root"])


def ctx(cl: Cluster, h: Host, **extra) -> Ctx:
    """A module context for `h` with its facts gathered (service manager, Python)."""
    c = host_ctx(h, cl.runner.conn(h), **extra)
    status, msg, _ = gather_facts(c)
    if status == "failed":
        raise ClusterError(f"{h.name}: {msg}")
    return c


def agent_pid(cl: Cluster, h: Host, c: Ctx | None = None) -> int | None:
    c = c or ctx(cl, h)
    if c.facts["service_manager"] == "systemd":
        out = c.conn.run(f"systemctl show -p MainPID --value {c.vars['swarmkit_unit']}").stdout.strip()
    else:
        out = c.conn.run(f"{modules.alive(c.vars, 'agent')} && echo $p").stdout.strip()
    return int(out) if out.isdigit() and out != "0" else None


def running_release(cl: Cluster, h: Host, c: Ctx | None = None) -> str | None:
    """The release the running agent was started from: its interpreter is the release's venv
    python (pip writes that absolute path into the entry script), so /proc/<pid>/cmdline names
    it even though the script was found through `current`."""
    pid = agent_pid(cl, h, c)
    if pid is None:
        return None
    cmd = cl.runner.conn(h).run(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    m = re.search(re.escape(root(h)) + r"/releases/([^/\s]+)/", cmd)
    return m.group(1) if m else None


def current_release(cl: Cluster, h: Host) -> str | None:
    out = cl.runner.conn(h).run(f"readlink {root(h)}/current").stdout.strip()
    return out.rsplit("/", 1)[-1] if out else None


def restart(cl: Cluster, h: Host, timeout: float = 30.0, how: str = "restarted") -> int:
    """Restart the agent (the supervisor's SIGHUP, or systemctl) and wait for a new process;
    `how="reloaded"` replaces the supervisor itself (its script changed)."""
    c = ctx(cl, h)
    old = agent_pid(cl, h, c)
    modules.agent_service(c, how)
    return wait_for(f"a new agent process on {h.name}",
                    lambda: (p := agent_pid(cl, h, c)) is not None and p != old and p, timeout)


def start(cl: Cluster, h: Host, timeout: float = 30.0) -> int:
    c = ctx(cl, h)
    modules.agent_service(c, "started")
    return wait_for(f"the agent running on {h.name}", lambda: agent_pid(cl, h, c), timeout)


def stop(cl: Cluster, h: Host, timeout: float = 30.0) -> str:
    """Stop the agent and its supervisor; "stopped" or "not running"."""
    c = ctx(cl, h)
    conn = c.conn
    if c.facts["service_manager"] == "systemd":
        if agent_pid(cl, h, c) is None:
            return "not running"
        unit = c.vars["swarmkit_unit"]
        r = conn.run(f"systemctl stop {unit}")
        if r.rc:
            raise ClusterError(f"{h.name}: systemctl stop {unit}: {r.stderr.strip()}")
        return "stopped"
    sup_alive, agent_alive = modules.alive(c.vars, "supervisor"), modules.alive(c.vars, "agent")
    if conn.run(sup_alive).rc != 0 and agent_pid(cl, h, c) is None:
        return "not running"
    conn.run(f"kill -TERM $(cat {modules.pidfile(c.vars, 'supervisor')}) 2>/dev/null")
    wait_for(f"the agent of {h.name} to stop",
             lambda: conn.run(f"! ( {sup_alive} ) && ! ( {agent_alive} )").rc == 0, timeout)
    return "stopped"


def log_mark(c: Ctx) -> str:
    """Where the agent's output ends now, for `log_grep`: a journal cursor under systemd (or
    the host's clock when the unit has logged nothing yet), else a byte offset into the
    supervisor's log file."""
    if c.facts["service_manager"] == "systemd":
        out = c.conn.run(f"journalctl -q -u {q(c.vars['swarmkit_unit'])} -n 0 --show-cursor; "
                         "date '+@%Y-%m-%d %H:%M:%S'").stdout
        m = re.search(r"cursor: (\S+)", out)
        return m.group(1) if m else out.strip().splitlines()[-1]
    out = c.conn.run(f"stat -c %s {q(c.vars['swarmkit_agent_log'])} 2>/dev/null || echo 0").stdout.strip()
    return out if out.isdigit() else "0"


def log_grep(c: Ctx, mark: str, pattern: str) -> bool:
    """Has the agent written a line matching the extended regex `pattern` since `mark`?"""
    if c.facts["service_manager"] == "systemd":
        since = f"--since={q(mark[1:])}" if mark.startswith("@") else f"--after-cursor={q(mark)}"
        src = f"journalctl -q -o cat -u {q(c.vars['swarmkit_unit'])} {since}"
    else:
        src = f"tail -c +{int(mark) + 1} {q(c.vars['swarmkit_agent_log'])}"
    return c.conn.run(f"{src} | grep -qE {q(pattern)}").rc == 0


def host_cmd(cl: Cluster, h: Host, args: str, timeout: float = 120.0, stdin: str | None = None):
    """`swarmkit-py ARGS --config <agent config>` on `h` (`stdin`: a secret for it, see
    HostConn.run); raises with its stderr on failure."""
    r = cl.runner.conn(h).run(cl.node_cmd(h, args), timeout=timeout, stdin=stdin)
    if r.rc:
        raise ClusterError(f"{h.name}: swarmkit-py {args.split()[0]} failed: {(r.stderr or r.stdout).strip()}")
    return r.stdout.strip()


# --- the cluster's view of a host -------------------------------------------------------------

def nodes_by_host(cl: Cluster) -> dict[str, dict]:
    """hostname -> node; when a hostname appears twice (a host re-joined under a new ID), the
    live entry wins."""
    out: dict[str, dict] = {}
    for n in cl.nodes():
        name = n.get("Description", {}).get("Hostname", "")
        prev = out.get(name)
        if prev is None or (state(prev) != "ready" and state(n) == "ready"):
            out[name] = n
    return out


def state(n: dict) -> str:
    return (n.get("Status", {}).get("State") or "").lower()


def reachability(n: dict) -> str:
    ms = n.get("ManagerStatus") or {}
    return "leader" if ms.get("Leader") else (ms.get("Reachability") or "").lower()


def is_manager(n: dict) -> bool:
    return bool(n.get("ManagerStatus")) or n.get("Spec", {}).get("Role") == "manager"


def leader_name(cl: Cluster) -> str | None:
    return next((n.get("Description", {}).get("Hostname") for n in cl.nodes() if reachability(n) == "leader"), None)


def has_leader(cl: Cluster) -> bool:
    return any(reachability(n) == "leader" for n in cl.nodes())


def quorum(n: int) -> int:
    return n // 2 + 1


def q(s: str) -> str:
    return shlex.quote(s)
