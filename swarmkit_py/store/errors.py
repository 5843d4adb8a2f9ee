"""Typed store errors.

A failed transaction is not an exception in the Raft apply path: `MemoryStore.apply` *returns*
one of these (every member reaches the same verdict, and the proposer gets it back as the
entry's result). They are still `Exception`s so that the proposer, or a read helper, can
simply `raise` them up to the API layer, which maps `code` (a gRPC code name, because that is
what Docker's messages quote) to an HTTP status, and `str(err)` to the `message` body.
"""

from __future__ import annotations


class StoreError(Exception):
    code = "Unknown"

    def __init__(self, message: str, *, op_index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.op_index = op_index
        """Which op of the transaction failed, when a transaction failed."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class SequenceError(StoreError):
    """An update was based on a stale read: somebody changed the object since."""

    def __init__(self, message: str = "update out of sequence", **kw) -> None:
        super().__init__(message, **kw)


class NameConflict(StoreError):
    code = "AlreadyExists"

    @classmethod
    def for_name(cls, kind: str, name: str, **kw) -> NameConflict:
        return cls(f"name conflicts with an existing object: {kind} {name} already exists", **kw)


class AlreadyExists(StoreError):
    code = "AlreadyExists"

    def __init__(self, message: str = "object already exists", **kw) -> None:
        super().__init__(message, **kw)


class NotFound(StoreError):
    code = "NotFound"

    @classmethod
    def for_ref(cls, kind: str, ref: str, **kw) -> NotFound:
        return cls(f"{kind} {ref} not found", **kw)


class Ambiguous(StoreError):
    """A name or ID prefix matched several objects."""

    code = "InvalidArgument"

    @classmethod
    def for_ref(cls, kind: str, ref: str, count: int) -> Ambiguous:
        return cls(f"{kind} {ref} is ambiguous ({count} matches found)")


class InvalidTransaction(StoreError):
    """Bytes that do not decode to a valid transaction. Deterministic like every other
    verdict: all members reject the same entry the same way."""

    code = "InvalidArgument"


class StaleView(StoreError):
    """A `View` was used after the store changed underneath it (an `await` in between)."""

    code = "Internal"


class InvalidSnapshot(ValueError):
    """Snapshot bytes that cannot be restored. Raised, because Raft cannot go on without
    a state to stand on."""


class WatchClosed(Exception):
    """The watch stream ended: closed by its owner, overflowed, or the store was restored.
    After anything but the owner's own close, events were lost: re-read the store and watch
    again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WatchOverflow(WatchClosed):
    """The watcher fell too far behind; it was closed so that apply never waits for it."""
