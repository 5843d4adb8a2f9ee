"""Where certificate material lives on disk, and how it gets there without ever being torn or
world-readable.

A crash halfway through writing a key must leave either the old key or the new one, never half
of each: a node with a torn key cannot prove who it is and has to be re-joined by hand. Hence
write-to-temp, fsync, rename, fsync the directory. The temp file is created 0600 from its first
byte, so a key is never readable by others, not even for the instant before a chmod.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import InvalidCertificateError

# Swarm's names, so an operator who knows /var/lib/docker/swarm/certificates finds their way.
ROOT_CA_CERT_FILE = "swarm-root-ca.crt"
ROOT_CA_KEY_FILE = "swarm-root-ca.key"
NODE_CERT_FILE = "swarm-node.crt"
NODE_KEY_FILE = "swarm-node.key"

KEY_MODE = 0o600
CERT_MODE = 0o644
DIR_MODE = 0o700


def ensure_private_dir(directory: str | os.PathLike[str]) -> Path:
    """Create the directory 0700 if missing. An existing directory keeps its mode: the operator
    (or the deploy role) may have chosen it on purpose."""
    path = Path(directory)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    return path


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = KEY_MODE) -> None:
    """Replace `path` with `data` so that readers see the old or the new content, never a mix,
    even across a power cut."""
    target = Path(path)
    directory = target.parent
    tmp = directory / f".{target.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            # os.open honours the umask; fchmod makes the final mode exactly what was asked.
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename durable: without this the new name may be lost on power failure even
    though the file's data was synced."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_node_credentials(
    directory: str | os.PathLike[str], cert_pem: bytes, key_pem: bytes
) -> None:
    """Store a node's certificate and key. The key is written first: a crash between the two
    leaves a new key with an old cert, which the node detects (they do not match) and renews,
    instead of a new cert whose key is lost."""
    path = ensure_private_dir(directory)
    write_atomic(path / NODE_KEY_FILE, key_pem, KEY_MODE)
    write_atomic(path / NODE_CERT_FILE, cert_pem, CERT_MODE)


SEALED_PEM_HEADER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
"""A node key sealed by auto-lock (see `ca.keyfile`)."""


def load_node_credentials(directory: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """Return (cert_pem, key_pem) as saved by `save_node_credentials`; raises
    InvalidCertificateError if they do not belong together (see above), or if the key is
    sealed by auto-lock (read it through `ca.keyfile.NodeCredentials` then)."""
    path = Path(directory)
    cert_pem = (path / NODE_CERT_FILE).read_bytes()
    key_pem = (path / NODE_KEY_FILE).read_bytes()
    if key_pem.lstrip().startswith(SEALED_PEM_HEADER):
        raise InvalidCertificateError(
            f"{path / NODE_KEY_FILE} is sealed by the swarm's unlock key (auto-lock); unlock this manager first"
        )
    check_node_pair(path, cert_pem, key_pem)
    return cert_pem, key_pem


def check_node_pair(directory: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Raise InvalidCertificateError unless the key and certificate belong together (checked
    by OpenSSL through `ssl`: every agent reads its pair, a worker without `cryptography`)."""
    from .sslfacts import KEY_MISMATCH, pair_error

    why = pair_error(cert_pem, key_pem)
    if why is None:
        return
    if why == KEY_MISMATCH:
        raise InvalidCertificateError(
            f"{directory / NODE_KEY_FILE} does not match {directory / NODE_CERT_FILE}; renew the certificate"
        )
    raise InvalidCertificateError(f"{directory / NODE_KEY_FILE}, {directory / NODE_CERT_FILE}: {why}")
