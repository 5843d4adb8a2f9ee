"""`swarmkit-py recover --force-new-cluster`: after quorum is lost for good, restart one
surviving manager as the only member of a new Raft group that keeps the whole state.

Like etcd's --force-new-cluster, every entry in this member's log is kept and treated as
committed (an entry it holds may have been committed by the lost majority; dropping it could
lose an acknowledged write). The old Raft directory is kept aside, never deleted. Nodes and
services survive; the lost managers show as unreachable until they are demoted and removed,
or re-joined.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..ca.keyfile import NodeCredentials
from ..raft.node import split_envelope, unwrap_snapshot, wrap_snapshot
from ..raft.storage import DiskStorage
from ..raft.types import ConfState, EntryType, HardState, Snapshot, SnapshotMeta
from ..store import MemoryStore, StoreError
from .state import LocalNode, certs_dir


def force_new_cluster(
    state_dir: str | Path, advertise_addr: str | None = None, unlock_key: bytes | None = None
) -> str:
    """`unlock_key`: needed when the state is auto-locked. The new state is encrypted with a
    fresh data key under a local key file, and the node's TLS key, if auto-lock sealed it, is
    written in clear (its password lived in the old keyring); if the recovered cluster is
    auto-locked, the agent seals both again with the cluster's unlock key as soon as it
    applies the cluster object."""
    state_dir = Path(state_dir)
    st = LocalNode.load(state_dir)
    if st is None or st.role != "manager":
        raise SystemExit(f"{state_dir} holds no manager state: run this on a surviving manager")
    raft_dir = state_dir / "raft"
    if not raft_dir.exists():
        raise SystemExit(f"{raft_dir} does not exist: this manager has no Raft log to recover from")
    try:
        old = DiskStorage(raft_dir, encrypted=True, unlock_key=unlock_key)
    except RuntimeError as e:
        raise SystemExit(f"{e}: stop the agent before recovering") from None
    loaded = old.load()  # refuses (with file and offset) if the log is corrupt
    creds = NodeCredentials(certs_dir(state_dir))
    if creds.sealed:
        password = old.keyring.node_key_password() if old.keyring is not None else None
        if password is None:
            raise SystemExit(f"{creds.key_path} is sealed but {raft_dir} holds no password for it")
        creds.unlock(password)
        creds.seal(None)
    old.close()

    store = MemoryStore()
    book: dict[int, str] = {}
    index = term = 0
    if loaded.snapshot is not None:
        book, data = unwrap_snapshot(loaded.snapshot.data)
        store.restore(data)
        index, term = loaded.snapshot.meta.index, loaded.snapshot.meta.term
    failed = 0
    for e in loaded.entries:
        index, term = e.index, e.term
        if e.type == EntryType.NORMAL and e.data:
            if isinstance(store.apply(e.index, split_envelope(e.data)), StoreError):
                failed += 1  # refused on the original members too: same verdict, no change
    addr = advertise_addr or book.get(st.raft_id) or (st.managers[0] if st.managers else "")
    if not addr:
        raise SystemExit("recover: --advertise-addr is required")

    aside = raft_dir.with_name(f"raft.before-recover-{int(time.time())}")
    raft_dir.rename(aside)
    new = DiskStorage(raft_dir, encrypted=True)
    new.load()
    snap = Snapshot(SnapshotMeta(index, term, ConfState(voters=[st.raft_id])), wrap_snapshot({st.raft_id: addr}, store.snapshot()))
    new.save_snapshot(snap)
    new.save(HardState(term=max(term, loaded.hard_state.term) + 1, vote=0, commit=index), [])
    new.close()
    st.managers = [addr]
    st.save(state_dir)
    nodes = store.view().nodes()
    services = store.view().services()
    return (
        f"recovered a one-manager cluster from index {index} (term {term}): {len(nodes)} nodes, "
        f"{len(services)} services kept; old log kept in {aside}. Start the agent, then demote or "
        "remove the lost managers and join new ones."
    )
