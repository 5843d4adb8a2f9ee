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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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
from .objects import __all__ as _objects_all
from .timefmt import format_rfc3339, parse_rfc3339

if TYPE_CHECKING:
    from .memory import MemoryStore, TxApplied, TxResult
    from .tx import CREATE, DELETE, UPDATE, Op, Transaction
    from .view import View
    from .watch import COMMIT, DEFAULT_WATCH_LIMIT, Event, Watcher

_LAZY = {
    **dict.fromkeys(("MemoryStore", "TxApplied", "TxResult"), "memory"),
    **dict.fromkeys(("CREATE", "DELETE", "UPDATE", "Op", "Transaction"), "tx"),
    "View": "view",
    **dict.fromkeys(("COMMIT", "DEFAULT_WATCH_LIMIT", "Event", "Watcher"), "watch"),
    **dict.fromkeys(_objects_all, "objects"),
}


def __getattr__(name: str):
    """The store proper and the model classes load at first use (`objects` says why): ids,
    errors, timestamps and the enums are all some processes need (`swarmkit-py join`)."""
    sub = _LAZY.get(name)
    if sub is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{sub}"), name)
    globals()[name] = value
    return value


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
