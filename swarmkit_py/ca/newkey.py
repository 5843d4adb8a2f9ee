"""A node's new key and CSR made in a child process, so that a worker's agent never loads
`cryptography`.

A worker's agent reads certificates through `ssl` (ca/sslfacts.py): `cryptography` and its
Rust library are ~8.5 MB of a process's RSS, and the issue-13 target for a worker-only agent
is 50 MB. A join, though, must make a key and a CSR, which the standard library cannot do. When
the waiting agent runs the join itself (agent/enroll.py), `in_child` runs
`python -m swarmkit_py.ca.newkey [COMMON_NAME]` with the agent's own interpreter: the child
prints the key and then the CSR, PEM, on stdout, and ends. The key crosses only that pipe; the
agent writes it 0600 (ca/files.py) once the manager's certificate for it has been checked.

This module imports nothing of `cryptography` until it runs as that child.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from .errors import CAError

CSR_BEGIN = b"-----BEGIN CERTIFICATE REQUEST-----"
CHILD_TIMEOUT_S = 30.0


async def in_child(common_name: str = "", *, timeout: float = CHILD_TIMEOUT_S) -> tuple[bytes, bytes]:
    """(key_pem, csr_pem) from a child process (see the module's docstring); CAError says
    why there is none."""
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", __name__, common_name,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise CAError(f"cannot start {sys.executable!r} to make this node's key: {exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        raise CAError(f"making this node's key took over {timeout:.0f} s ({sys.executable} -m {__name__}); "
                      "is the host overloaded?") from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: the child ends with its caller
            proc.kill()
            await proc.wait()
    key, sep, csr = out.partition(CSR_BEGIN)
    if proc.returncode != 0 or not sep or b"PRIVATE KEY-----" not in key:
        why = err.decode(errors="replace").strip()[-600:] or "no key and CSR on its output"
        raise CAError(f"making this node's key failed ({sys.executable} -m {__name__}, exit {proc.returncode}): "
                      f"{why}")
    return key, sep + csr


def main(argv: list[str]) -> int:
    from .certs import generate_key_and_csr

    key_pem, csr_pem = generate_key_and_csr(argv[0] if argv else "")
    sys.stdout.buffer.write(key_pem + csr_pem)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
