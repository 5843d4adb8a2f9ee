"""Tables and their secondary indexes.

Buckets are insertion-ordered dicts rather than sets: set order follows string hashing, which
is randomised per process, and control loops iterating query results should make the same
choices on every run (reproducible simulations, comparable logs).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field

from .objects import KINDS, StoreObject, Task, TaskState

IndexFn = Callable[[StoreObject], Hashable | None]


@dataclass(frozen=True)
class TableSchema:
    kind: str
    unique_names: bool
    """Services and clusters: a second object with the same name is a `NameConflict`.
    Nodes are found by hostname, which two hosts may share, so theirs is not unique."""
    indexes: dict[str, IndexFn] = field(default_factory=dict)


def _task_slot(t: Task) -> Hashable | None:
    return (t.service_id, t.slot) if t.slot is not None else None


def _task_service_state(t: Task) -> Hashable | None:
    """(service, observed state, meant to run): `docker service ls` counts a replicated
    service's running and completed tasks as the sizes of two or three buckets instead of a
    walk over all of its tasks (100,000 for a typo, issue 13)."""
    return (t.service_id, t.status.state, t.desired_state <= TaskState.RUNNING) if t.service_id else None


SCHEMAS: dict[str, TableSchema] = {
    "cluster": TableSchema("cluster", unique_names=True),
    "service": TableSchema("service", unique_names=True),
    "network": TableSchema("network", unique_names=True),
    "secret": TableSchema("secret", unique_names=True),
    "config": TableSchema("config", unique_names=True),
    "node": TableSchema(
        "node",
        unique_names=False,
        indexes={
            "role": lambda n: n.spec.role,
            "state": lambda n: n.status.state,
        },
    ),
    "task": TableSchema(
        "task",
        unique_names=False,
        indexes={
            "service_id": lambda t: t.service_id or None,
            "node_id": lambda t: t.node_id or None,
            "service_slot": _task_slot,
            "service_state": _task_service_state,
            "desired_state": lambda t: t.desired_state,
            "state": lambda t: t.status.state,
        },
    ),
}
assert set(SCHEMAS) == set(KINDS)


def name_index_key(obj: StoreObject) -> str | None:
    """Names match case-insensitively, as in swarmkit's name index."""
    name = obj.name_key()
    return name.lower() if name else None


class Table:
    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.objs: dict[str, StoreObject] = {}
        self.by_name: dict[str, dict[str, None]] = {}
        self.indexes: dict[str, dict[Hashable, dict[str, None]]] = {
            name: {} for name in schema.indexes
        }
        self.changed_at = 0
        """Log index of the last transaction that changed this table (the snapshot's index
        for a restored one): equal values, equal contents. Set by the store."""

    def __len__(self) -> int:
        return len(self.objs)

    def __iter__(self) -> Iterator[StoreObject]:
        return iter(self.objs.values())

    def get(self, id: str) -> StoreObject | None:
        return self.objs.get(id)

    def put(self, obj: StoreObject) -> StoreObject | None:
        """Insert or replace; returns the replaced object."""
        old = self.objs.get(obj.id)
        if old is not None:
            self._unindex(old)
        self.objs[obj.id] = obj
        self._index(obj)
        return old

    def remove(self, id: str) -> StoreObject | None:
        old = self.objs.pop(id, None)
        if old is not None:
            self._unindex(old)
        return old

    def ids_named(self, name: str) -> list[str]:
        return list(self.by_name.get(name.lower(), ()))

    def ids_where(self, index: str, key: Hashable) -> Iterable[str]:
        """The ids in `index`'s bucket for `key`; ValueError for an index the table lacks."""
        try:
            buckets = self.indexes[index]
        except KeyError:
            raise ValueError(f"{self.schema.kind} has no index {index!r}") from None
        return buckets.get(key, {}).keys()

    def check(self, obj: StoreObject) -> None:
        """Compute (and hash) every index key of `obj` without storing anything: what apply
        does for each staged object before it commits any, so that a key that cannot be
        computed fails the whole transaction instead of leaving half of it in the tables."""
        hash(name_index_key(obj))
        for fn in self.schema.indexes.values():
            hash(fn(obj))

    def _index(self, obj: StoreObject) -> None:
        name = name_index_key(obj)
        if name is not None:
            self.by_name.setdefault(name, {})[obj.id] = None
        for index, fn in self.schema.indexes.items():
            key = fn(obj)
            if key is not None:
                self.indexes[index].setdefault(key, {})[obj.id] = None

    def _unindex(self, obj: StoreObject) -> None:
        name = name_index_key(obj)
        if name is not None:
            _drop(self.by_name, name, obj.id)
        for index, fn in self.schema.indexes.items():
            key = fn(obj)
            if key is not None:
                _drop(self.indexes[index], key, obj.id)


def _drop(buckets: dict, key: Hashable, id: str) -> None:
    bucket = buckets.get(key)
    if bucket is not None:
        bucket.pop(id, None)
        if not bucket:
            del buckets[key]


def new_tables() -> dict[str, Table]:
    return {kind: Table(schema) for kind, schema in SCHEMAS.items()}


__all__ = ["SCHEMAS", "Table", "TableSchema", "name_index_key", "new_tables"]
