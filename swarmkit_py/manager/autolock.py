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
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..background import Background
from ..ca import write_atomic
from ..raft.storage import DiskStorage, InvalidUnlockKeyError, parse_unlock_key
from ..store import MemoryStore
from ..store.follow import StoreFollower

log = logging.getLogger(__name__)
RECHECK_S = 5.0


class KEKWatcher:
    def __init__(self, store: MemoryStore, storage: DiskStorage, ca_key_path: Path | None = None) -> None:
        self.store = store
        self.storage = storage
        self.ca_key_path = ca_key_path
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
        want = self.desired_kek()
        if self.ca_key_path is not None:
            await asyncio.to_thread(self._export_ca_key, cluster, want is None)
        ring = self.storage.keyring
        was_local = ring.kek_kind == "local"
        if await asyncio.to_thread(self.storage.set_kek, want):
            if want is not None and was_local:
                log.info("auto-lock on: Raft data keys now sealed by the unlock key; rotating the data key")
                await asyncio.to_thread(self.storage.rotate_data_key)
            elif want is not None:
                log.info("unlock key rotated: Raft data keys re-wrapped")
            else:
                log.info("auto-lock off: Raft data keys sealed by a local key file again")

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
