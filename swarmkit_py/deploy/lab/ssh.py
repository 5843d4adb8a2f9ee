"""SSH into lab hosts with real host-key checking.

Fabric's Connection silently accepts unknown host keys (AutoAddPolicy) and ignores
StrictHostKeyChecking; loading the lab's known_hosts into the client and switching to
RejectPolicy makes a wrong key an error, as it should be against real machines.
"""

from __future__ import annotations

from pathlib import Path

import paramiko


def connection(addr: str, key: Path, known_hosts: Path, timeout: float = 5.0):
    """A fabric Connection as root to `addr` that rejects unknown or changed host keys."""
    from fabric import Connection

    c = Connection(
        addr, user="root", port=22,
        connect_timeout=timeout,
        connect_kwargs={"key_filename": str(key), "look_for_keys": False, "allow_agent": False,
                        "banner_timeout": timeout, "auth_timeout": timeout},
    )
    c.client.load_host_keys(str(known_hosts))
    c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return c


def run(addr: str, key: Path, known_hosts: Path, cmd: str, timeout: float = 5.0,
        hide: bool = True) -> tuple[int, str, str]:
    """Run `cmd` on the host; (exit status, stdout, stderr). Connection errors raise."""
    with connection(addr, key, known_hosts, timeout) as c:
        r = c.run(cmd, hide=hide, warn=True, in_stream=False)
        return r.exited, r.stdout, r.stderr
