"""Every manager keeps its Raft storage's key-encryption key in step with the cluster's auto-lock.

As swarmkit's manager does (manager.go, watching the cluster object for `UnlockKeys`): the
setting and the unlock key are replicated through Raft like everything else, and each manager,
leader or not, reacts when it applies them:

- auto-lock turned on: the data keys are re-wrapped by the unlock key, the local ``kek`` file is
  deleted, and a data-key rotation is requested (the old data key sat under a key that was on
  disk, so everything is re-encrypted at the next snapshot, which the driver takes at once);
- the unlock key rotated: the data keys are re-wrapped by the new key (a manager that was down
  meanwhile is unlocked with the key it last saw, then catches up here);
- auto-lock turned off: a fresh local key file wraps the data keys again.

This is not a leader loop: a follower must re-wrap its own disk as well.

The same watcher keeps the exported copy of the CA signing key (certs/swarm-root-ca.key, which
`swarmkit-py client-cert` reads on the host) in step: written 0600 while auto-lock is off (the
disk opens the Raft state then anyway), removed while it is on, so a locked manager's disk holds
the CA key only inside the sealed Raft state.

And the node's TLS key (`ca.keyfile`): while auto-lock is on it is sealed by a password kept in
the Raft keyring under the unlock key, after the Docker API's own key pair has been issued
(signed here with the CA key from the store) so that a locked restart can still answer
`docker swarm unlock` over TCP; when auto-lock goes off the node key is written in clear again
and the API key pair removed. The API pair is re-issued when the root CA, the node's addresses
or half of its lifetime change.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..background import Background
from ..ca import RootCA, write_atomic
from ..ca.keyfile import (
    NodeCredentials,
    api_credentials_current,
    issue_api_credentials,
    remove_api_credentials,
)
from ..raft.storage import DiskStorage, InvalidUnlockKeyError, parse_unlock_key
from ..store import MemoryStore
from ..store.follow import StoreFollower

log = logging.getLogger(__name__)
RECHECK_S = 5.0


class KEKWatcher:
    def __init__(self, store: MemoryStore, storage: DiskStorage, ca_key_path: Path | None = None,
                 node_credentials: NodeCredentials | None = None) -> None:
        self.store = store
        self.storage = storage
        self.ca_key_path = ca_key_path
        self.node_credentials = node_credentials
        self._loop = Background("kek-watcher", self._run)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        # Also every few seconds: a snapshot installed from the leader replaces the store
        # wholesale, and the cheap re-check covers it whatever it emits.
        follower = StoreFollower(self.store, "cluster", name="applying the auto-lock setting to the Raft keys")
        await follower.repeat(self.reconcile, every=RECHECK_S)

    def desired_kek(self) -> bytes | None:
        """The unlock key while the cluster is auto-locked, None for a local key file."""
        cluster = self.store.view().cluster()
        if cluster is None:
            return None
        enc = cluster.spec.encryption_config
        if enc is None or not enc.auto_lock_managers or not cluster.unlock_key:
            return None
        try:
            return parse_unlock_key(cluster.unlock_key)
        except InvalidUnlockKeyError:
            log.error("the cluster's stored unlock key is malformed; keeping the current key")
            raise

    async def reconcile(self) -> None:
        cluster = self.store.view().cluster()
        if cluster is None:
            return  # nothing applied yet: keep whatever the disk has
        ring = self.storage.keyring
        if cluster.version.index < ring.kek_index:
            # A restart replaying its log: this cluster object is older than the setting the
            # disk already follows. Acting on it would re-wrap the Raft keys by an unlock key
            # the operator has discarded, export the CA key or unseal the node key.
            return
        want = self.desired_kek()
        if self.ca_key_path is not None:
            await asyncio.to_thread(self._export_ca_key, cluster, want is None)
        was_local = ring.kek_kind == "local"
        if await asyncio.to_thread(self.storage.set_kek, want, cluster.version.index):
            if want is not None and was_local:
                log.info("auto-lock on: Raft data keys now sealed by the unlock key; rotating the data key")
                await asyncio.to_thread(self.storage.rotate_data_key)
            elif want is not None:
                log.info("unlock key rotated: Raft data keys re-wrapped")
            else:
                log.info("auto-lock off: Raft data keys sealed by a local key file again")
        if self.node_credentials is not None:
            await asyncio.to_thread(self._reconcile_node_key, cluster, want is not None)

    def _reconcile_node_key(self, cluster, locked: bool) -> None:
        creds = self.node_credentials
        if not locked:
            if creds.seal(None):
                log.info("auto-lock off: the node's TLS key is stored in clear again (0600)")
            if remove_api_credentials(creds.directory):
                log.info("auto-lock off: the Docker API is served with the node's key again")
            return
        root = cluster.root_ca
        if root is None or not root.ca_cert or not root.ca_key:
            return
        cert_pem, _ = creds.load()
        ca = RootCA.from_pem(root.ca_cert.encode(), root.ca_key.encode())
        # The API's key pair first: a crash right after sealing must still leave a key the
        # locked manager can serve `docker swarm unlock` with.
        if not api_credentials_current(creds.directory, ca, cert_pem):
            issue_api_credentials(creds.directory, ca, cert_pem)
            log.info("issued the Docker API's own key pair (served while the node key is sealed)")
        if creds.seal(self.storage.keyring.node_key_password(create=True)):
            log.info("auto-lock on: the node's TLS key is sealed by the unlock key")

    def _export_ca_key(self, cluster, export: bool) -> None:
        path = self.ca_key_path
        key = cluster.root_ca.ca_key if cluster.root_ca else None
        if export and key:
            data = key.encode()
            if not path.exists() or path.read_bytes() != data:
                write_atomic(path, data, mode=0o600)
        elif not export and path.exists():
            path.unlink()
            log.info("auto-lock on: removed %s (the CA key stays only in the sealed Raft state)", path)
