"""How control loops and API handlers write to the cluster state.

Every write is a store `Transaction` proposed through Raft; the store's verdict (the applied
events, or a typed `StoreError` such as "update out of sequence") comes back to the proposer
from whichever manager it runs on. Control loops and handlers depend only on `Proposer`, so
unit tests give them a `LocalProposer` over a bare `MemoryStore` instead of a Raft group.
"""

from __future__ import annotations

from typing import Protocol

from ..store import MemoryStore, StoreError, Transaction, TxApplied


class Proposer(Protocol):
    store: MemoryStore

    async def propose(self, tx: Transaction, timeout: float | None = None) -> TxApplied:
        """Commit `tx` or raise: a StoreError when the store refuses it (nothing changed),
        raft's NoQuorum / NotLeader / Stopped when it could not be committed."""


class LocalProposer:
    """Applies transactions straight to a local store, as a one-member cluster would."""

    def __init__(self, store: MemoryStore | None = None):
        self.store = store or MemoryStore()
        self._index = self.store.applied_index

    async def propose(self, tx: Transaction, timeout: float | None = None) -> TxApplied:
        self._index = max(self._index, self.store.applied_index) + 1
        result = self.store.apply_local(self._index, tx.encode(), tx)
        if isinstance(result, StoreError):
            raise result
        return result


class RaftProposer:
    """Proposes through a RaftNode whose state machine is `store`."""

    def __init__(self, raft, store: MemoryStore):
        self.raft = raft
        self.store = store

    async def propose(self, tx: Transaction, timeout: float | None = None) -> TxApplied:
        # a handed-over transaction is applied here from its own objects (apply_local)
        result = await self.raft.propose(tx.encode(), timeout=timeout,
                                         local=tx if tx.handed_over else None)
        if isinstance(result, StoreError):
            raise result
        return result
