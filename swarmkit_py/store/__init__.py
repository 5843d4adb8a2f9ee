"""The replicated cluster state: object model, transactions, in-memory indexed store
(Raft's state machine), consistent reads and watch events.

Typical leader-side write:

    view = store.view()
    svc = view.lookup("service", "web").clone()
    svc.spec.mode.replicated.replicas = 5
    data = Transaction().update(svc).encode()
    result = await raft.propose(data)   # MemoryStore.apply's return value
    if isinstance(result, StoreError):
        raise result
"""

from .errors import (
    AlreadyExists,
    Ambiguous,
    InvalidSnapshot,
    InvalidTransaction,
    NameConflict,
    NotFound,
    SequenceError,
    StaleView,
    StoreError,
    WatchClosed,
    WatchOverflow,
)
from .ids import ID_LENGTH, is_valid_id, new_id
from .memory import MemoryStore, TxApplied, TxResult
from .objects import *  # noqa: F403 - the model is part of the store's public surface
from .objects import __all__ as _objects_all
from .timefmt import format_rfc3339, parse_rfc3339
from .tx import CREATE, DELETE, UPDATE, Op, Transaction
from .view import View
from .watch import COMMIT, DEFAULT_WATCH_LIMIT, Event, Watcher

__all__ = [
    "COMMIT",
    "CREATE",
    "DEFAULT_WATCH_LIMIT",
    "DELETE",
    "ID_LENGTH",
    "UPDATE",
    "AlreadyExists",
    "Ambiguous",
    "Event",
    "InvalidSnapshot",
    "InvalidTransaction",
    "MemoryStore",
    "NameConflict",
    "NotFound",
    "Op",
    "SequenceError",
    "StaleView",
    "StoreError",
    "Transaction",
    "TxApplied",
    "TxResult",
    "View",
    "WatchClosed",
    "WatchOverflow",
    "Watcher",
    "format_rfc3339",
    "is_valid_id",
    "new_id",
    "parse_rfc3339",
    *_objects_all,
]
