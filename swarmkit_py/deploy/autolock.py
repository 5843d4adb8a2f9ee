"""Auto-lock from the operator's side: turn it on or off, rotate the key, unlock managers.

The unlock key is the one secret that opens every manager's Raft state after a restart, so it
never passes through a command line (shell history, `ps`), the deploy log or the console:
- turning auto-lock on (or rotating the key) writes the key to a file the operator names,
  created 0600; only the file's path is printed and logged;
- `unlock` reads the key from such a file or from a prompt without echo (a pipe works too),
  and sends it only in the body of the TLS request to each locked manager's API.

Everything else is the cluster's own rule, through its Docker API (`docker swarm update
--autolock`, `unlock-key --rotate`, `unlock`): a wrong key gets the manager's refusal, which
says nothing about the right key.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from . import api
from .cluster import Cluster, ClusterError
from .runner import StepResult

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


def unlock(cl: Cluster, key: str, only: list[str] | None = None) -> dict[str, str]:
    """Unlock every locked manager of the inventory (or `only` those hosts); the others are
    reported as they are. Returns {host: outcome}."""
    hosts = [cl.inv.host(n) for n in only] if only else list(cl.inv.hosts.values())
    states = cl.membership(hosts)
    managers = [h for h in hosts if isinstance(states[h.name], dict) and states[h.name].get("role") == "manager"]
    if not managers:
        raise ClusterError(f"no host of {cl.inv.path} is a swarm manager")
    if not (cl.bundle / "key.pem").exists():
        cl.fetch_bundle(managers[0])
    out: dict[str, str] = {}
    for h in managers:
        step = "unlock"
        c = api.client(h, cl.bundle, timeout=10)
        try:
            state = c.api.info().get("Swarm", {}).get("LocalNodeState")
        except Exception as e:
            out[h.name] = f"unreachable: {api.explain(e)}"
            cl.runner.record(StepResult(h.name, step, "unreachable", out[h.name]))
            continue
        try:
            if state != "locked":
                out[h.name] = f"not locked ({state})"
                cl.runner.record(StepResult(h.name, step, "ok", out[h.name]))
                continue
            try:
                c.api.unlock_swarm(key)
            except Exception as e:
                out[h.name] = f"refused: {api.explain(e)}"
                cl.runner.record(StepResult(h.name, step, "failed", out[h.name]))
                continue
            out[h.name] = "unlocked"
            cl.runner.record(StepResult(h.name, step, "changed", "unlocked"))
        finally:
            c.close()
    return out
