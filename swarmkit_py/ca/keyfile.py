"""The node's TLS private key on disk, sealed while auto-lock is on; and the key the Docker API
is served with meanwhile.

Docker Swarm's auto-lock protects "the TLS key used to communicate among swarm nodes and the
key used to encrypt and decrypt Raft logs": a manager's disk alone must not let anyone act as
that manager. So while the cluster is auto-locked, a manager's `swarm-node.key` is written as
an encrypted PKCS#8 PEM (``-----BEGIN ENCRYPTED PRIVATE KEY-----``, PBES2 with AES-256, what
`cryptography`'s BestAvailableEncryption produces and `openssl pkey` reads), and its password
is a random 32-byte secret kept in the Raft keyring (`raft/storage/crypto.Keyring`), wrapped
by the same key-encryption key as the Raft data keys, i.e. by the unlock key. One file
(``deks.json``) therefore decides what the unlock key opens: rotating the unlock key re-wraps
the password there, atomically with the data keys, and a crash can never leave the node key
under one unlock key and the Raft state under another. Turning auto-lock off writes the key in
clear again (0600, as without auto-lock in Swarm). Workers are untouched: auto-lock concerns
managers.

A locked manager therefore cannot present its node certificate before it is unlocked: it
serves no port 2377 at all, and its Docker API's TCP listener uses a separate key pair
(`swarm-api.crt`/`.key`, written before the node key is sealed), like dockerd, whose own TLS
key auto-lock does not cover. That certificate is signed by the cluster CA for the host's
addresses (what the Docker CLI checks), has the role `swarm-api-server` and no client-auth
usage: no check on any port accepts it, so its key, readable on disk, opens nothing but the
right to answer API clients as this host, which is what `docker swarm unlock` over TCP needs.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CAError, InvalidCertificateError
from .files import (
    CERT_MODE,
    KEY_MODE,
    NODE_CERT_FILE,
    NODE_KEY_FILE,
    SEALED_PEM_HEADER,
    check_node_pair,
    save_node_credentials,
    write_atomic,
)

if TYPE_CHECKING:
    from cryptography import x509

    from .authority import RootCA

# `cryptography` is imported by what seals, unseals or issues keys (managers with auto-lock),
# not here: every agent reads its node key through `NodeCredentials`, a worker's is in clear
# and is checked against its certificate by `ssl` (files.check_node_pair).

API_CERT_FILE = "swarm-api.crt"
API_KEY_FILE = "swarm-api.key"


class NodeKeySealedError(CAError):
    """The node key is sealed (auto-lock) and this process does not hold its password."""


def is_sealed(key_pem: bytes) -> bool:
    return key_pem.lstrip().startswith(SEALED_PEM_HEADER)


def seal_key(key_pem: bytes, password: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(password))


def unseal_key(sealed_pem: bytes, password: bytes) -> bytes:
    """The key in clear (PKCS#8 PEM); InvalidCertificateError when the password is wrong."""
    from cryptography.hazmat.primitives import serialization

    from .certs import private_key_to_pem

    try:
        key = serialization.load_pem_private_key(sealed_pem, password=password)
    except (ValueError, TypeError) as exc:
        raise InvalidCertificateError(f"the sealed node key does not open with this password: {exc}") from None
    return private_key_to_pem(key)  # type: ignore[arg-type]


class NodeCredentials:
    """The node's certificate and key in one certs directory, and the password of the key
    while it is sealed, held in memory only.

    Every reader and writer of the node key in the agent goes through one instance (TLS
    contexts, certificate renewal, the manager's auto-lock watcher), so a key written during
    a renewal is sealed if and only if the key is sealed now. Methods are thread-safe: the
    watcher re-seals from a worker thread.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._password: bytes | None = None
        self._lock = threading.Lock()

    @property
    def key_path(self) -> Path:
        return self.directory / NODE_KEY_FILE

    @property
    def sealed(self) -> bool:
        """Whether the key file on disk is sealed now."""
        try:
            return is_sealed(self.key_path.read_bytes())
        except FileNotFoundError:
            return False

    @property
    def unlocked(self) -> bool:
        return self._password is not None

    def unlock(self, password: bytes) -> None:
        """Remember the password after checking it opens the key on disk."""
        with self._lock:
            data = self.key_path.read_bytes()
            if is_sealed(data):
                unseal_key(data, password)
            self._password = password

    def load(self) -> tuple[bytes, bytes]:
        """(cert_pem, key_pem in clear); NodeKeySealedError while sealed without a password."""
        with self._lock:
            return self._load()

    def _load(self) -> tuple[bytes, bytes]:
        cert_pem = (self.directory / NODE_CERT_FILE).read_bytes()
        key_pem = self.key_path.read_bytes()
        if is_sealed(key_pem):
            if self._password is None:
                raise NodeKeySealedError(
                    f"{self.key_path} is sealed by the swarm's unlock key (auto-lock): unlock this manager first "
                    "(docker swarm unlock, or invoke unlock)"
                )
            key_pem = unseal_key(key_pem, self._password)
        check_node_pair(self.directory, cert_pem, key_pem)
        return cert_pem, key_pem

    def save(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Store a (new) certificate and key, the key sealed if it is sealed now."""
        with self._lock:
            stored = seal_key(key_pem, self._password) if self._password is not None and self.sealed else key_pem
            save_node_credentials(self.directory, cert_pem, stored)

    def seal(self, password: bytes | None) -> bool:
        """Re-write the key sealed by `password`, or in clear for None; returns whether the file
        changed. The key is replaced atomically (a crash leaves the old or the new file)."""
        with self._lock:
            data = self.key_path.read_bytes()
            if is_sealed(data):
                if self._password is None:
                    raise NodeKeySealedError(f"{self.key_path} is sealed and its password is not known here")
                if password == self._password:
                    return False
                clear = unseal_key(data, self._password)
            else:
                if password is None:
                    self._password = None
                    return False
                clear = data
            write_atomic(self.key_path, clear if password is None else seal_key(clear, password), KEY_MODE)
            self._password = password
            return True


# ---- the Docker API's own key pair while the node key is sealed ------------------------------


def load_api_credentials(directory: str | Path) -> tuple[bytes, bytes] | None:
    d = Path(directory)
    try:
        return (d / API_CERT_FILE).read_bytes(), (d / API_KEY_FILE).read_bytes()
    except FileNotFoundError:
        return None


def remove_api_credentials(directory: str | Path) -> bool:
    removed = False
    for name in (API_CERT_FILE, API_KEY_FILE):
        p = Path(directory) / name
        if p.exists():
            p.unlink()
            removed = True
    return removed


def _address_sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return list(san.get_values_for_type(x509.DNSName)), [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def api_credentials_current(directory: str | Path, ca: RootCA, node_cert_pem: bytes, renew_after: float = 0.5) -> bool:
    """Whether the API key pair on disk is signed by `ca`, names the node certificate's
    addresses and has more than `renew_after` of its lifetime left."""
    from .certs import load_certificate, utcnow
    from .identity import address_names, identity_from_cert
    from .renewal import needs_renewal

    have = load_api_credentials(directory)
    if have is None:
        return False
    try:
        cert = load_certificate(have[0])
        ca.verify(cert, now=None)
    except CAError:
        return False
    node = load_certificate(node_cert_pem)
    node_id = identity_from_cert(node).node_id
    want_dns, want_ips = _address_sans(node)
    dns, ips = _address_sans(cert)
    return (set(address_names(want_dns, node_id)) == set(dns) and set(want_ips) == set(ips)
            and not needs_renewal(cert, utcnow(), renew_after))


def issue_api_credentials(directory: str | Path, ca: RootCA, node_cert_pem: bytes) -> None:
    """Make and store the API key pair for this node (key 0600, written before the cert)."""
    from .certs import generate_private_key, load_certificate, private_key_to_pem
    from .identity import identity_from_cert

    node = load_certificate(node_cert_pem)
    ident = identity_from_cert(node)
    dns, ips = _address_sans(node)
    key = generate_private_key()
    issued = ca.issue_api_server_certificate(key.public_key(), ident.node_id, ident.cluster_id,
                                             dns_names=dns, ip_addresses=ips)
    d = Path(directory)
    write_atomic(d / API_KEY_FILE, private_key_to_pem(key), KEY_MODE)
    write_atomic(d / API_CERT_FILE, issued.cert_pem, CERT_MODE)
