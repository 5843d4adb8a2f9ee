"""The replicated state: an in-memory indexed store that is Raft's state machine.

Every manager holds one. Raft calls `apply(index, data)` with each committed entry, in log
order, on every member; the leader's control loops and every member's API read it locally
through `view()`, and the control loops follow it through `watch()`.

`apply` is deterministic - its outcome depends only on the current state, the entry bytes and
the log index - so all members stay byte-for-byte equal (see `snapshot`). It validates the whole
transaction against a staged copy of the touched objects before changing anything, so a failed
transaction leaves no trace, and it returns (never raises) its verdict.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgpack
from pydantic import ValidationError

from .errors import (
    AlreadyExists,
    InvalidSnapshot,
    InvalidTransaction,
    NameConflict,
    NotFound,
    SequenceError,
    StoreError,
)
from .intern import Interner
from .objects import KINDS, StoreObject, Version
from .tables import SCHEMAS, Table, name_index_key, new_tables
from .tx import CREATE, DELETE, Transaction
from .view import View
from .watch import COMMIT, DEFAULT_WATCH_LIMIT, Event, EventFilter, Watcher, WatchHub

SNAPSHOT_VERSION = 1
CHECK_LOCAL = os.environ.get("SWARMKIT_STORE_CHECK_LOCAL") == "1"
"""Decode every entry `apply_local` applies from the writer's objects too and compare (tests)."""
_DELETED = object()
_BULK_BYTES = 128 * 1024  # entries this big are bulk work (thousands of objects)
_BULK_OPS = 400  # about as many objects (a task is some 300 bytes on the wire)


_gc_pause = {"depth": 0, "disabled_it": False}
_gc_pause_lock = threading.Lock()


@contextmanager
def _gc_paused(enabled: bool = True) -> Iterator[None]:
    """Building tens of thousands of models at once makes the cyclic GC rescan the growing
    heap over and over (it tripled restore time in measurements); nothing built here is
    cyclic garbage, so collection is deferred until the bulk work is done. Counted, so that
    pauses that overlap without nesting (a stepped decode spans the loop's other work, and
    members of one process each decode their own) re-enable the collector only when the last
    one ends, and only if a pause disabled it."""
    if not enabled:
        yield
        return
    with _gc_pause_lock:
        if _gc_pause["depth"] == 0:
            _gc_pause["disabled_it"] = gc.isenabled()
            gc.disable()
        _gc_pause["depth"] += 1
    try:
        yield
    finally:
        with _gc_pause_lock:
            _gc_pause["depth"] -= 1
            if _gc_pause["depth"] == 0 and _gc_pause["disabled_it"]:
                gc.enable()


@dataclass(frozen=True, slots=True)
class TxApplied:
    """Result of a successful transaction: its log index and the changes it made, in op
    order (the same events watchers receive)."""

    index: int
    events: tuple[Event, ...]

    @property
    def objects(self) -> list[StoreObject]:
        """The stored versions of created and updated objects (with Version and times set)."""
        return [e.new for e in self.events if e.new is not None]


TxResult = TxApplied | StoreError


log = logging.getLogger(__name__)


def _check_same(own: Transaction, data: bytes) -> None:
    """Raise unless `data` decodes to the transaction `own` (CHECK_LOCAL): what every other
    member stores must be what this one keeps. A writer whose object does not survive its
    own encoding (a field set without validation to something the model would read back
    differently) fails here, in the tests, instead of leaving its leader's store unlike the
    others'."""
    try:
        other = Transaction.decode(data)
    except InvalidTransaction as err:
        raise AssertionError(f"a handed-over transaction does not decode: {err}") from None
    if other.timestamp != own.timestamp or len(other.ops) != len(own.ops):
        raise AssertionError("a handed-over transaction decodes to another timestamp or op count")
    for i, (a, b) in enumerate(zip(own.ops, other.ops, strict=True)):
        same = (a.action, a.kind, a.id) == (b.action, b.kind, b.id) and (
            a.obj is b.obj is None
            or (a.obj is not None and b.obj is not None and type(a.obj) is type(b.obj)
                and a.obj == b.obj and a.obj.to_wire() == b.obj.to_wire()))
        if not same:
            raise AssertionError(f"op {i} of a handed-over transaction ({a.action} {a.kind} {a.id}) "
                                 f"is not what its entry decodes to:\n  kept:    {a.obj!r}\n  decoded: {b.obj!r}")


class MemoryStore:
    """Implements `swarmkit_py.raft.fsm.StateMachine`. Single-threaded by design: apply,
    control loops' reads and watch delivery all happen on the agent's event loop thread.

    One exception: the Docker API's front thread (`api/front.py`) reads while holding
    `commit_lock`, which apply holds only while it writes a decided transaction into the
    tables (and restore while it swaps them), so such a read sees whole transactions only and
    the loop is never held longer than that read."""

    def __init__(self) -> None:
        self.commit_lock = threading.Lock()
        self._tables: dict[str, Table] = new_tables()
        self._hub = WatchHub()
        self.applied_index = 0
        """Log index of the last entry applied (or restored)."""
        self._generation = 0
        self.interner = Interner()
        """Equal task specs and endpoints read from entries and snapshots become one object."""
        self.applied_from = {"entry": 0, "writer": 0}
        """Entries applied by decoding their bytes / from the writer's objects (apply_local)."""

    # -- Raft state machine ---------------------------------------------------------------

    def apply(self, index: int, data: bytes) -> TxResult:
        with _gc_paused(len(data) > _BULK_BYTES):
            try:
                tx: Transaction | InvalidTransaction = Transaction.decode(data, self.interner)
            except InvalidTransaction as err:
                tx = err
            return self.apply_prepared(index, tx)

    def prepare_steps(self, data: bytes) -> Generator[None, None, Transaction | InvalidTransaction]:
        """The decoding half of `apply`, in steps (a pause every few objects), for a Raft member
        that decodes a big entry of others a slice at a time and answers its peers between
        slices; `apply_prepared` then applies the result, in log order. Decoding changes
        nothing but the interner's cache, which is this store's alone."""
        # paused for the whole decode, pauses included: re-enabled between steps, the
        # collector ran on every step and rescanned the heap over and over
        with _gc_paused(len(data) > _BULK_BYTES):
            try:
                return (yield from Transaction.decode_steps(data, self.interner))
            except InvalidTransaction as err:
                return err

    def apply_prepared(self, index: int, prepared: Transaction | InvalidTransaction) -> TxResult:
        """`apply(index, data)` of an entry `prepare_steps(data)` (or `apply` itself) decoded."""
        self.applied_from["entry"] += 1
        if isinstance(prepared, InvalidTransaction):
            self.applied_index = max(self.applied_index, index)
            return prepared
        with _gc_paused(len(prepared) > _BULK_OPS):
            return self._apply_decided(index, prepared)

    def apply_local(self, index: int, data: bytes, tx: Transaction) -> TxResult:
        """`apply(index, data)` for an entry this process proposed, `data` being `tx.encode()`:
        a transaction whose writer handed its objects over (`Transaction(handed_over=True)`)
        is applied from shallow copies of them instead of decoding `data` again, which was
        most of what a leader's own writes cost it to apply (swarmkit's leader commits its
        own transaction the same way). The state is the one `apply` would reach: every
        manager stores what the bytes say, and the bytes were made from these objects (with
        `SWARMKIT_STORE_CHECK_LOCAL=1`, as the test suite runs, every such entry is decoded
        too and must give equal objects, or this raises). Any other transaction is decoded."""
        if not tx.handed_over:
            return self.apply(index, data)
        self.applied_from["writer"] += 1
        with _gc_paused(len(data) > _BULK_BYTES):
            own = tx.for_store()
            if CHECK_LOCAL:
                _check_same(own, data)
            return self._apply_decided(index, own)

    def _apply_decided(self, index: int, tx: Transaction) -> TxResult:
        try:
            result = self._apply_tx(index, tx)
        except Exception as exc:
            # Every manager applies the same entry: one that raised here would stop them
            # all on it, for ever (issue 9, hole 7c). _apply_tx changes nothing before
            # its verdict and checks every index key before committing, so the store is
            # as it was; the same bytes fail the same way everywhere, so refusing the
            # entry is deterministic.
            log.error("refusing the transaction at index %d: applying it raised %s: %s",
                      index, type(exc).__name__, exc)
            result = InvalidTransaction(f"transaction could not be applied: {type(exc).__name__}: {exc}")
        self.applied_index = max(self.applied_index, index)
        return result

    def apply_tx(self, index: int, tx: Transaction) -> TxResult:
        """Apply through the same encode/decode path as Raft would (tests, single-node tools)."""
        return self.apply(index, tx.encode())

    def snapshot(self) -> bytes:
        """Whole-store image; equal states give equal bytes (objects sorted by ID)."""
        objects = {
            kind: [table.objs[id].to_wire() for id in sorted(table.objs)]
            for kind, table in self._tables.items()
        }
        return msgpack.packb(
            {"v": SNAPSHOT_VERSION, "index": self.applied_index, "objects": objects},
            use_bin_type=True,
        )

    def restore(self, data: bytes) -> None:
        """Replace everything. Watchers are closed (their view of the world is gone)."""
        try:
            with _gc_paused():
                tables, index = self._decode_snapshot(data, self.interner)
        except InvalidSnapshot:
            raise
        except (ValidationError, AttributeError, KeyError, TypeError, ValueError, msgpack.UnpackException) as exc:
            raise InvalidSnapshot(f"cannot restore store snapshot: {exc}") from exc
        with self.commit_lock:
            self._tables = tables
            self.applied_index = index
            self._generation += 1
        self._hub.close_all("store restored from a snapshot; re-read the store and watch again")

    @staticmethod
    def _decode_snapshot(data: bytes, intern: Interner | None) -> tuple[dict[str, Table], int]:
        raw = msgpack.unpackb(data, raw=False)
        if not isinstance(raw, dict) or raw.get("v") != SNAPSHOT_VERSION:
            raise InvalidSnapshot("snapshot has no supported version")
        tables = new_tables()
        for kind, items in raw["objects"].items():
            model = KINDS[kind]
            for item in items:
                if intern is not None:
                    item = intern.payload(kind, item)
                tables[kind].put(model.model_validate(item))
        index = int(raw["index"])
        for table in tables.values():
            table.changed_at = index
        return tables, index

    # -- reads and watches ----------------------------------------------------------------

    def view(self) -> View:
        """Consistent read access, valid until the store next changes (i.e. don't hold one
        across an `await`; a stale view raises `StaleView` rather than mixing two states)."""
        return View(self._tables, self._generation, lambda: self._generation, self.applied_index)

    def holds(self, obj: StoreObject) -> bool:
        """Whether `obj` is the version stored now. One dict lookup and no view, so it is
        answered from any thread (`api/chunked.RenderCache` asks from the API's front thread,
        where a view taken just before a commit would be stale at its first read)."""
        return self._tables[obj.kind].objs.get(obj.id) is obj

    def version_of(self, kind: str, id: str) -> int | None:
        """The version index of object `id` of `kind` stored now; None when there is none.
        One dict lookup, answered from any thread, as `holds`."""
        obj = self._tables[kind].objs.get(id)
        return None if obj is None else obj.version.index

    def watch(
        self,
        kinds: Iterable[str | type[StoreObject]] | str | type[StoreObject] | None = None,
        *,
        actions: Iterable[str] | None = None,
        filter: EventFilter | None = None,
        limit: int = DEFAULT_WATCH_LIMIT,
        commits: bool = False,
    ) -> Watcher:
        """Subscribe to changes from the next applied transaction on. Taking a `view()` and a
        `watch()` without an `await` between them gives a state plus every change after it."""
        return self._hub.watch(kinds, actions=actions, filter=filter, limit=limit, commits=commits)

    @property
    def watcher_count(self) -> int:
        return len(self._hub)

    # -- the transaction engine ------------------------------------------------------------

    def _apply_tx(self, index: int, tx: Transaction) -> TxResult:
        staged: dict[tuple[str, str], Any] = {}
        events: list[Event] = []

        def current(kind: str, id: str) -> StoreObject | None:
            obj = staged.get((kind, id))
            if obj is _DELETED:
                return None
            if obj is not None:
                return obj
            return self._tables[kind].get(id)

        for i, op in enumerate(tx.ops):
            key = (op.kind, op.id)
            old = current(op.kind, op.id)
            if op.action == DELETE:
                if old is None:
                    return NotFound.for_ref(op.kind, op.id, op_index=i)
                staged[key] = _DELETED
                events.append(Event(op.kind, DELETE, old, None, index))
                continue

            new = op.obj
            assert new is not None
            if op.action == CREATE:
                if old is not None:
                    return AlreadyExists(op_index=i)
                new.created_at = tx.timestamp
            else:  # UPDATE
                if old is None:
                    return NotFound.for_ref(op.kind, op.id, op_index=i)
                committed = self._tables[op.kind].get(op.id)
                base = committed.version.index if committed is not None else 0
                if new.version.index != base:
                    return SequenceError(op_index=i)
                new.created_at = old.created_at
            new.version = Version.model_construct(index=index)  # an int: nothing to validate
            new.updated_at = tx.timestamp

            conflict = self._name_conflict(new, current, staged)
            if conflict is not None:
                return NameConflict.for_name(op.kind, conflict, op_index=i)
            staged[key] = new
            events.append(Event(op.kind, op.action, old, new, index))

        for (kind, _), obj in staged.items():
            if obj is not _DELETED:
                self._tables[kind].check(obj)
        # Verdict reached: commit every staged change at once.
        with self.commit_lock:
            for (kind, id), obj in staged.items():
                table = self._tables[kind]
                if obj is _DELETED:
                    table.remove(id)
                else:
                    table.put(obj)
                table.changed_at = index
            self._generation += 1
        if events:
            self._hub.publish(events + [Event(COMMIT, COMMIT, None, None, index)])
        return TxApplied(index, tuple(events))

    def _name_conflict(self, new: StoreObject, current, staged: dict) -> str | None:
        """Another live object (as of the ops so far) holding the same name, for kinds whose
        names are unique."""
        if not SCHEMAS[new.kind].unique_names:
            return None
        name = name_index_key(new)
        if name is None:
            return None
        table = self._tables[new.kind]
        for id in table.ids_named(name):
            if id != new.id:
                holder = current(new.kind, id)
                if holder is not None and name_index_key(holder) == name:
                    return new.name_key()
        for (kind, id), obj in staged.items():
            if kind == new.kind and id != new.id and obj is not _DELETED:
                if name_index_key(obj) == name:
                    return new.name_key()
        return None
