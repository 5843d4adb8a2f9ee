"""Encryption at rest for the Raft state: data keys (DEKs) wrapped by a key-encryption key (KEK).

The shape is Docker Swarm's (moby/swarmkit manager/deks.go, manager/encryption):
- WAL records and snapshot payloads are sealed with a data key, AES-256-GCM (an AEAD from
  `cryptography`; AES-NI makes it the cheapest authenticated cipher on x86). Each file names
  the key id it was written with, so a file is always read with the right key, including
  during a rotation interrupted by a crash.
- The data keys live in ``deks.json`` in the Raft directory, each wrapped (AES-GCM again) by
  the KEK. Without autolock the KEK is a random key in ``kek`` next to it (mode 0600), as Swarm
  keeps its DEK unencrypted in the node's key file: the disk alone opens the state, but a copy
  of the WAL or a snapshot without the key files does not. With autolock the KEK is the
  operator's unlock key (``SWMKEY-1-...``) and is never written to disk: a restarted manager
  cannot read its own state until someone types the key (`docker swarm unlock`).
- One more secret rides in ``deks.json`` under the same KEK: the password that seals the
  node's TLS key while auto-lock is on (``node_key_password``; the sealing itself is
  `ca.keyfile`'s). Opaque bytes here; kept with the data keys so that the unlock key opens
  both and a KEK change re-wraps both in one atomic write.
- Rotation: ``rotate()`` adds a *pending* data key; the next snapshot is written with it and
  every other file is re-encrypted with it at the same time (DiskStorage does that), then the
  old key is erased from ``deks.json``. Turning autolock on rotates, because the old data key
  sat under a KEK that was on disk.

A wrong unlock key fails the AEAD tag of the wrapped data key: that is the whole check, so
nothing about the right key (not even a hash of it) is stored anywhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .fsutil import fsync_dir, write_file_atomically

UNLOCK_KEY_PREFIX = "SWMKEY-1-"
KEY_BYTES = 32
NONCE_BYTES = 12
DEKS_FILE = "deks.json"
KEK_FILE = "kek"
KEK_LOCAL = "local"
KEK_UNLOCK_KEY = "unlock-key"
_FORMAT = 1

SWARM_LOCKED_MESSAGE = (
    "Swarm is encrypted and needs to be unlocked before it can be used. "
    'Please use "docker swarm unlock" to unlock it.'
)
"""dockerd's errSwarmLocked, word for word, so operators' searches find it."""
INVALID_UNLOCK_KEY_MESSAGE = "swarm could not be unlocked: invalid key provided"
"""dockerd's invalidUnlockKey: says nothing about the right key."""


class SwarmLockedError(Exception):
    """The state is sealed by an unlock key and none was given."""

    def __init__(self) -> None:
        super().__init__(SWARM_LOCKED_MESSAGE)


class InvalidUnlockKeyError(Exception):
    """The key given does not open the data keys (or is not a key at all)."""

    def __init__(self, message: str = INVALID_UNLOCK_KEY_MESSAGE) -> None:
        super().__init__(message)


class KeyringError(Exception):
    """deks.json or the kek file is missing or damaged: not a crash artefact (both are replaced
    atomically), so the state cannot be opened and the message says what is wrong."""


# ---- the human-readable unlock key ----------------------------------------------------------


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=8 * KEY_BYTES)


def format_unlock_key(key: bytes) -> str:
    """Swarm's format: prefix + unpadded standard base64 of the 32 key bytes."""
    return UNLOCK_KEY_PREFIX + base64.b64encode(key).decode().rstrip("=")


def parse_unlock_key(text: str) -> bytes:
    """The key bytes of ``SWMKEY-1-...``; InvalidUnlockKeyError("invalid key string") as in
    swarmkit's ParseHumanReadableKey for anything else (surrounding whitespace is ignored)."""
    text = (text or "").strip()
    if not text.startswith(UNLOCK_KEY_PREFIX):
        raise InvalidUnlockKeyError("invalid key string")
    body = text[len(UNLOCK_KEY_PREFIX) :]
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidUnlockKeyError("invalid key string: not base64") from None
    if len(key) != KEY_BYTES:
        raise InvalidUnlockKeyError("invalid key string")
    return key


# ---- sealing ---------------------------------------------------------------------------------


def seal(aead: AESGCM, aad: bytes, data: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, data, aad)


def unseal(aead: AESGCM, aad: bytes, blob: bytes | memoryview) -> bytes:
    """Raises InvalidTag when the blob was not sealed by this key with this aad."""
    blob = bytes(blob)
    return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)


def _wrap_aad(key_id: int) -> bytes:
    return b"swarmkit-py raft data key %d" % key_id


_NODE_KEY_AAD = b"swarmkit-py node key password"


class Keyring:
    """The data keys of one Raft directory, unwrapped in memory.

    Methods that change deks.json take a lock: the KEK and rotation calls come from the
    manager's key watcher while the driver's thread writes the log; the file is replaced
    atomically, so a crash leaves the old or the new keyring, never half of one.
    """

    def __init__(self, directory: Path) -> None:
        self._dir = Path(directory)
        self._lock = threading.Lock()
        self._keys: dict[int, bytes] = {}
        self._aeads: dict[int, AESGCM] = {}
        self.current = 0
        self.pending: int | None = None
        self.retired: list[int] = []
        self.kek_kind = KEK_LOCAL
        self._kek = b""
        self.kek_index = 0
        """Raft index of the cluster object whose auto-lock setting last chose the KEK: a view
        of the cluster older than it (a restart replaying its log) must not change the KEK."""
        self._node_key_password: bytes | None = None

    # ---- opening ---------------------------------------------------------------------------

    @staticmethod
    def is_locked(directory: str | Path) -> bool:
        """True when the directory's data keys are sealed by an unlock key (autolock)."""
        path = Path(directory) / DEKS_FILE
        if not path.exists():
            return False
        try:
            return json.loads(path.read_text()).get("kek") == KEK_UNLOCK_KEY
        except (OSError, ValueError):
            return False

    @classmethod
    def open(cls, directory: str | Path, unlock_key: bytes | None = None) -> Keyring:
        """Load the keyring, or create one (local KEK, a first data key) in a directory that has
        none. Raises SwarmLockedError / InvalidUnlockKeyError for a locked one."""
        ring = cls(Path(directory))
        path = ring._dir / DEKS_FILE
        if not path.exists():
            ring._create()
            return ring
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != _FORMAT:
                raise KeyringError(f"{path}: unsupported format {doc.get('format')!r}")
            ring.kek_kind = doc["kek"]
            ring.current = int(doc["current"])
            ring.pending = None if doc.get("pending") is None else int(doc["pending"])
            ring.retired = [int(k) for k in doc.get("retired", [])]
            ring.kek_index = int(doc.get("kek_index", 0))
            wrapped = {int(k): base64.b64decode(v) for k, v in doc["keys"].items()}
            wrapped_node_key = base64.b64decode(doc["node_key"]) if doc.get("node_key") is not None else None
        except (KeyError, ValueError, TypeError) as exc:
            raise KeyringError(f"{path} is damaged ({exc}); the Raft state cannot be decrypted") from None
        if ring.kek_kind == KEK_LOCAL:
            ring._kek = ring._read_local_kek()
        elif ring.kek_kind == KEK_UNLOCK_KEY:
            if unlock_key is None:
                raise SwarmLockedError()
            ring._kek = unlock_key
        else:
            raise KeyringError(f"{path}: unknown key-encryption key kind {ring.kek_kind!r}")
        kek = AESGCM(ring._kek)
        for key_id, blob in wrapped.items():
            try:
                ring._add(key_id, unseal(kek, _wrap_aad(key_id), blob))
            except (InvalidTag, ValueError):
                if ring.kek_kind == KEK_UNLOCK_KEY:
                    raise InvalidUnlockKeyError() from None
                raise KeyringError(
                    f"{path}: data key {key_id} does not open with the key in {ring._dir / KEK_FILE}"
                ) from None
        if ring.current not in ring._keys:
            raise KeyringError(f"{path}: the current data key {ring.current} is missing")
        if wrapped_node_key is not None:
            try:
                ring._node_key_password = unseal(kek, _NODE_KEY_AAD, wrapped_node_key)
            except (InvalidTag, ValueError):
                raise KeyringError(f"{path}: the node key password does not open with the key that opened the data keys") from None
        return ring

    def _read_local_kek(self) -> bytes:
        path = self._dir / KEK_FILE
        try:
            kek = path.read_bytes()
        except FileNotFoundError:
            raise KeyringError(
                f"{path} is missing: the data keys in {self._dir / DEKS_FILE} are wrapped by it "
                "and the Raft state cannot be decrypted without it"
            ) from None
        if len(kek) != KEY_BYTES:
            raise KeyringError(f"{path} is damaged ({len(kek)} bytes, expected {KEY_BYTES})")
        return kek

    def _create(self) -> None:
        self._kek = new_key()
        self.kek_kind = KEK_LOCAL
        write_file_atomically(self._dir / KEK_FILE, self._kek)
        self.current = 1
        self._add(1, new_key())
        self._save()

    def _add(self, key_id: int, key: bytes) -> None:
        self._keys[key_id] = key
        self._aeads[key_id] = AESGCM(key)

    def _save(self) -> None:
        kek = AESGCM(self._kek)
        doc = {
            "format": _FORMAT,
            "kek": self.kek_kind,
            "current": self.current,
            "pending": self.pending,
            "retired": self.retired,
            "kek_index": self.kek_index,
            "keys": {
                str(k): base64.b64encode(seal(kek, _wrap_aad(k), v)).decode()
                for k, v in sorted(self._keys.items())
            },
        }
        if self._node_key_password is not None:
            doc["node_key"] = base64.b64encode(seal(kek, _NODE_KEY_AAD, self._node_key_password)).decode()
        write_file_atomically(self._dir / DEKS_FILE, json.dumps(doc, indent=1).encode())

    # ---- use -------------------------------------------------------------------------------

    def aead(self, key_id: int) -> AESGCM | None:
        return self._aeads.get(key_id)

    def has(self, key_id: int) -> bool:
        return key_id in self._keys

    def node_key_password(self, create: bool = False) -> bytes | None:
        """The password of the node's sealed TLS key (see the module docstring); with `create`
        one is made (and saved, wrapped by the KEK) if there is none yet."""
        with self._lock:
            if self._node_key_password is None and create:
                self._node_key_password = new_key()
                self._save()
            return self._node_key_password

    # ---- changes ---------------------------------------------------------------------------

    def set_kek(self, unlock_key: bytes | None, at_index: int = 0) -> bool:
        """Re-wrap the data keys: by `unlock_key` (autolock on) or by a fresh local key (off),
        as the cluster object at Raft index `at_index` says. Returns whether anything changed;
        nothing does for a setting older than the one that chose the current KEK (a restart
        replaying its log passes through the old unlock keys: re-wrapping by one of them would
        lock the disk with a key the operator has discarded). Order: the new kek file (if any)
        is durable before deks.json refers to it, and the old one goes only after deks.json no
        longer needs it."""
        with self._lock:
            if at_index < self.kek_index:
                return False
            if unlock_key is not None:
                if self.kek_kind == KEK_UNLOCK_KEY and unlock_key == self._kek:
                    return False
                self.kek_kind, self._kek = KEK_UNLOCK_KEY, unlock_key
                self.kek_index = at_index
                self._save()
                kek_path = self._dir / KEK_FILE
                if kek_path.exists():
                    kek_path.unlink()
                    fsync_dir(self._dir)
                return True
            if self.kek_kind == KEK_LOCAL:
                return False
            kek = new_key()
            write_file_atomically(self._dir / KEK_FILE, kek)
            self.kek_kind, self._kek = KEK_LOCAL, kek
            self.kek_index = at_index
            self._save()
            return True

    def rotate(self) -> int:
        """Add a pending data key (the next snapshot switches to it); idempotent while one is
        pending."""
        with self._lock:
            if self.pending is None:
                self.pending = max(self._keys) + 1
                self._add(self.pending, new_key())
                self._save()
            return self.pending

    def promote_pending(self) -> bool:
        """Make the pending key current; the old one is retired until no file uses it."""
        with self._lock:
            if self.pending is None:
                return False
            self.retired.append(self.current)
            self.current, self.pending = self.pending, None
            self._save()
            return True

    def drop_retired(self) -> None:
        """Erase retired keys once every file is re-encrypted with the current one."""
        with self._lock:
            if not self.retired:
                return
            for k in self.retired:
                self._keys.pop(k, None)
                self._aeads.pop(k, None)
            self.retired = []
            self._save()
