"""Transactions: the unit of change that goes through Raft.

The leader-side code builds a `Transaction` (several creates, updates and deletes), encodes it
to bytes and proposes them; every member decodes and applies the same bytes. The wire form is
msgpack of a plain map, so it is compact and carries no Python-specific types:

    {"v": 1, "ts": "<RFC 3339 UTC>", "ops": [[action, kind, payload], ...]}

where `action` is "create" | "update" | "delete", `kind` is "cluster" | "node" | "service" |
"task", and `payload` is the object's JSON (Docker spelling, internal fields included) for
create/update, or the object's ID for delete.

`ts` is read from the clock once, here, by the proposer: apply must be deterministic, so it
never reads the clock itself and stamps CreatedAt/UpdatedAt with this value instead.

A transaction built with `handed_over=True` is one whose writer hands its objects over: it
never touches them (or anything inside them) once proposed. The member that proposed it may
then apply it from those objects instead of decoding the entry's bytes
(`MemoryStore.apply_local`), as swarmkit's leader commits its own transaction when its entry
commits and decodes only the entries of others.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgpack
from pydantic import ValidationError

from .errors import InvalidTransaction
from .intern import Interner
from .objects import KINDS, StoreObject
from .timefmt import format_rfc3339, parse_rfc3339, to_utc, utcnow

WIRE_VERSION = 1
CREATE = "create"
UPDATE = "update"
DELETE = "delete"
ACTIONS = (CREATE, UPDATE, DELETE)


@dataclass(frozen=True, slots=True)
class Op:
    """One change. `obj` is the full new object for create/update and None for delete."""

    action: str
    kind: str
    id: str
    obj: StoreObject | None = None


def kind_of(kind_or_obj: str | type[StoreObject] | StoreObject) -> str:
    if isinstance(kind_or_obj, str):
        if kind_or_obj not in KINDS:
            raise ValueError(f"unknown object kind {kind_or_obj!r}")
        return kind_or_obj
    return kind_or_obj.kind


class Transaction:
    """A batch of changes applied all-or-nothing.

    An update must carry the `version.index` of the object as it was read; if the object has
    changed since, the whole transaction fails with `SequenceError`. Within one transaction,
    every update of the same object is checked against its version *before* the transaction.
    """

    def __init__(
        self,
        timestamp: datetime | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        handed_over: bool = False,
    ) -> None:
        self.timestamp = to_utc(timestamp if timestamp is not None else clock())
        self.ops: list[Op] = []
        self.handed_over = handed_over
        """The writer never touches these objects once proposed (see the module's docstring)."""

    def create(self, obj: StoreObject) -> Transaction:
        return self._add(CREATE, obj)

    def update(self, obj: StoreObject) -> Transaction:
        return self._add(UPDATE, obj)

    def delete(self, kind_or_obj: str | type[StoreObject] | StoreObject, id: str | None = None) -> Transaction:
        kind = kind_of(kind_or_obj)
        if id is None:
            if not isinstance(kind_or_obj, StoreObject):
                raise ValueError("delete needs an object or a kind and an ID")
            id = kind_or_obj.id
        if not id:
            raise ValueError("delete needs a non-empty ID")
        self.ops.append(Op(DELETE, kind, id))
        return self

    def _add(self, action: str, obj: StoreObject) -> Transaction:
        if not isinstance(obj, StoreObject) or obj.kind not in KINDS:
            raise TypeError(f"not a storable object: {obj!r}")
        if not obj.id:
            raise ValueError(f"{obj.kind} has no ID; assign one with new_id() before {action}")
        self.ops.append(Op(action, obj.kind, obj.id, obj))
        return self

    def __len__(self) -> int:
        return len(self.ops)

    def for_store(self) -> Transaction:
        """The transaction apply may keep the objects of: each object a shallow copy, so the
        store's stamps (version, times) never land on the writer's own objects."""
        tx = Transaction(self.timestamp)
        tx.ops = [op if op.obj is None else Op(op.action, op.kind, op.id, op.obj.model_copy())
                  for op in self.ops]
        return tx

    def encode(self) -> bytes:
        """The wire bytes; an object that cannot be stored (an integer beyond 64 bits, text that
        is not valid Unicode, nesting deeper than msgpack and pydantic allow: all things a
        client's JSON can carry) is an `InvalidTransaction` here, before it is proposed, and
        never a Raft entry that apply could choke on (issue 9, hole 7c)."""
        try:
            ops: list[list[Any]] = []
            for op in self.ops:
                payload = op.id if op.obj is None else op.obj.to_wire()
                ops.append([op.action, op.kind, payload])
            return msgpack.packb(
                {"v": WIRE_VERSION, "ts": format_rfc3339(self.timestamp), "ops": ops},
                use_bin_type=True,
            )
        except (OverflowError, ValueError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
            raise InvalidTransaction(
                f"the change cannot be stored: {exc} (numbers must fit in 64 bits, text must be "
                "valid Unicode, values may nest at most a few hundred levels)"
            ) from None

    @classmethod
    def decode(cls, data: bytes, intern: Interner | None = None) -> Transaction:
        """Parse wire bytes; anything malformed is an `InvalidTransaction` (raised here, and
        turned into a returned result by apply). With `intern` (the store's), tasks share
        their equal specs and endpoints (intern.py)."""
        steps = cls.decode_steps(data, intern)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    @classmethod
    def decode_steps(cls, data: bytes, intern: Interner | None = None,
                     every: int = 16) -> Generator[None, None, Transaction]:
        """`decode` in steps: the generator pauses after every `every` objects and returns
        the transaction (or raises `InvalidTransaction`), so that a caller on an event loop
        can let others run while it decodes a big entry."""
        try:
            raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises a zoo of types for garbage
            raise InvalidTransaction(f"transaction is not valid msgpack: {exc}") from None
        if not isinstance(raw, dict) or raw.get("v") != WIRE_VERSION:
            raise InvalidTransaction("transaction has no supported wire version")
        ts, raw_ops = raw.get("ts"), raw.get("ops")
        if not isinstance(ts, str) or not isinstance(raw_ops, list):
            raise InvalidTransaction("transaction lacks ts or ops")
        try:
            tx = cls(parse_rfc3339(ts))
        except ValueError as exc:
            raise InvalidTransaction(str(exc)) from None
        for i, raw_op in enumerate(raw_ops):
            if i % every == every - 1:
                yield
            if not (isinstance(raw_op, list) and len(raw_op) == 3):
                raise InvalidTransaction(f"op {i} is malformed", op_index=i)
            action, kind, payload = raw_op
            if action not in ACTIONS or kind not in KINDS:
                raise InvalidTransaction(f"op {i}: unknown action or kind", op_index=i)
            if action == DELETE:
                if not isinstance(payload, str) or not payload:
                    raise InvalidTransaction(f"op {i}: delete needs an ID", op_index=i)
                tx.ops.append(Op(DELETE, kind, payload))
                continue
            try:
                if intern is not None:
                    payload = intern.payload(kind, payload)
                obj = KINDS[kind].model_validate(payload)
            except ValidationError as exc:
                raise InvalidTransaction(f"op {i}: invalid {kind}: {exc}", op_index=i) from None
            if not obj.id:
                raise InvalidTransaction(f"op {i}: {kind} has no ID", op_index=i)
            tx.ops.append(Op(action, kind, obj.id, obj))
        return tx
