"""Auto-lock from the operator's side: turn it on or off, rotate the key, unlock managers.

The unlock key is the one secret that opens every manager's Raft state (and TLS key) after a
restart, so it never passes through a command line (shell history, `ps`), the deploy log or
the console:
- turning auto-lock on (or rotating the key) writes the key to a file the operator names,
  created 0600; only the file's path is printed and logged;
- `unlock` reads the key from such a file or from a prompt without echo (a pipe works too);
- it reaches a host the way the sudo password already does (`HostConn.run(stdin=...)`): on
  the standard input of `swarmkit-py unlock` (which hands it to the agent's root-only unix
  socket) or of `recover --unlock-key-stdin` / `log-position --unlock-key-stdin`, over SSH,
  and the run log masks it should it ever appear. The command lines carry only file paths.

Operations that restart managers (upgrade, a bootstrap's rolling restart, recover) unlock each
one that comes back locked (`after_restart`): with the key the operator gave (--key-file), else
the one the cluster itself hands its operator (`docker swarm unlock-key`, over the API with the
client bundle) while it has a leader.

Everything else is the cluster's own rule, through its Docker API (`docker swarm update
--autolock`, `unlock-key --rotate`, `unlock`): a wrong key gets the manager's refusal, which
says nothing about the right key.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

from . import api
from .cluster import Cluster, ClusterError
from .inventory import Host
from .runner import StepResult
from .ssh import fan_out

KEY_PREFIX = "SWMKEY-1-"


def write_key_file(path: Path, key: str) -> None:
    """Write the key 0600 from the first byte on (never a moment readable by others)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (key + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_key(key_file: str | Path | None) -> str:
    """The key from `key_file`, else typed at a prompt (no echo), else one line of stdin."""
    if key_file:
        p = Path(key_file)
        try:
            text = p.read_text().strip()
        except OSError as e:
            raise ClusterError(f"cannot read the unlock key file {p}: {e.strerror}") from None
        if p.stat().st_mode & 0o077:
            print(f"warning: {p} is readable by others (chmod 600 it)", file=sys.stderr)
    elif sys.stdin.isatty():
        text = getpass.getpass("Please enter unlock key: ").strip()
    else:
        text = sys.stdin.readline().strip()
    if not text:
        raise ClusterError("no unlock key given (use --key-file PATH, or type it at the prompt)")
    return text


def set_autolock(cl: Cluster, enable: bool, key_file: str | Path | None, rotate: bool = False) -> str:
    """Turn auto-lock on (writing the key to `key_file`), off, or rotate its key."""
    if (enable or rotate) and not key_file:
        raise ClusterError("--key-file is required: the unlock key is written there (0600), never printed")
    c = cl.client()
    sw = c.api.inspect_swarm()
    on = bool((sw.get("Spec", {}).get("EncryptionConfig") or {}).get("AutoLockManagers"))
    if rotate and not (on or enable):
        raise ClusterError("cannot rotate because autolock is not turned on")
    spec = sw["Spec"]
    spec.setdefault("EncryptionConfig", {})["AutoLockManagers"] = bool(enable or (rotate and on))
    try:
        c.api.update_swarm(version=sw["Version"]["Index"], swarm_spec=spec,
                           rotate_manager_unlock_key=bool(rotate))
    except Exception as e:
        raise ClusterError(f"the cluster refused the update: {api.explain(e)}") from None
    if not (enable or rotate):
        cl.runner.log("autolock: turned off")
        return "auto-lock is off: managers restart without a key"
    key = c.api.get_unlock_key().get("UnlockKey", "")
    if not key.startswith(KEY_PREFIX):
        raise ClusterError("the cluster returned no unlock key")
    write_key_file(Path(key_file), key)
    what = "rotated" if rotate else "turned on"
    cl.runner.log(f"autolock: {what}; unlock key written to {key_file} (0600)")
    return (f"auto-lock {what}; the unlock key is in {key_file} (0600). Keep it in a password "
            "manager: a manager that restarts cannot serve until it is unlocked with it.")


def unlock_host(cl: Cluster, h: Host, key: str, wait: float = 0.0) -> tuple[str, str]:
    """`swarmkit-py unlock` on `h`, the key on its stdin. Returns (status, message): "changed"
    unlocked, "ok" not locked, "failed" refused (wrong key), "unreachable" no agent answered."""
    cl.runner.log.redact(key)
    r = cl.runner.conn(h).run(cl.node_cmd(h, f"unlock --wait {wait:g}"), stdin=key + "\n", timeout=wait + 60)
    out = (r.stdout.strip() or r.stderr.strip()).splitlines()
    msg = out[-1] if out else f"rc={r.rc}"
    if r.rc == 0:
        return ("changed" if msg == "unlocked" else "ok"), msg
    return ("failed" if r.rc == 2 else "unreachable"), msg


def unlock(cl: Cluster, key: str, only: list[str] | None = None) -> dict[str, str]:
    """Unlock every locked manager of the inventory (or `only` those hosts), over SSH; the others
    are reported as they are. Returns {host: outcome}."""
    hosts = [cl.inv.host(n) for n in only] if only else list(cl.inv.hosts.values())
    states = cl.membership(hosts)
    managers = [h for h in hosts if isinstance(states[h.name], dict) and states[h.name].get("role") == "manager"]
    if not managers:
        raise ClusterError(f"no host of {cl.inv.path} is a swarm manager")
    out: dict[str, str] = {}
    results = fan_out(managers, lambda h: unlock_host(cl, h, key, wait=10.0), cl.runner.forks)
    for h, res in zip(managers, results, strict=True):
        status, msg = ("unreachable", str(res)) if isinstance(res, Exception) else res
        out[h.name] = msg
        cl.runner.record(StepResult(h.name, "unlock", status, msg))
    return out


def is_locked_on_disk(cl: Cluster, h: Host) -> bool:
    """Whether `h`'s Raft state is sealed by the unlock key (`swarmkit-py status`): its agent,
    once (re)started, serves nothing until it is unlocked."""
    r = cl.runner.conn(h).run(cl.node_cmd(h, "status"))
    try:
        return bool(json.loads(r.stdout).get("AutoLocked")) if r.rc == 0 else False
    except ValueError:
        return False


def cluster_key(cl: Cluster) -> str | None:
    """The key the operator gave, else the cluster's own (needs a leader and the bundle)."""
    if cl.unlock_key:
        return cl.unlock_key
    try:
        key = cl.client().api.get_unlock_key().get("UnlockKey") or None
    except Exception:  # no leader, no bundle, auto-lock off: nothing to fetch
        return None
    cl.use_unlock_key(key)
    return key


def after_restart(cl: Cluster, h: Host, wait: float = 30.0) -> None:
    """A manager's agent was just (re)started: if auto-lock left it locked, unlock it (see the
    module docstring), or say what the operator must do."""
    if not is_locked_on_disk(cl, h):
        return
    key = cluster_key(cl)
    if key is None:
        raise ClusterError(f"{h.name} restarted with auto-lock on and waits for its unlock key: pass --key-file "
                           "FILE (the file `invoke autolock` wrote), or run `invoke unlock`")
    status, msg = unlock_host(cl, h, key, wait)
    cl.runner.record(StepResult(h.name, "unlock", status, msg))
    if status in ("failed", "unreachable"):
        raise ClusterError(f"{h.name}: unlock after restart {status}: {msg}")
