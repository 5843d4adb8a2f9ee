"""Read access to the store.

A `View` reads the live tables, so it is consistent only while the store does not change:
apply runs on the same event loop thread, so any code that does not `await` between reads
sees one state. Rather than silently mix two states when a view is held across an `await`,
every read checks the store's generation and raises `StaleView`.

Objects handed out are the store's own, not copies (a deep copy of a Task costs more than a
scheduling decision). Treat them as read-only; `obj.clone()` before changing and proposing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from .errors import Ambiguous, NotFound, StaleView
from .objects import Cluster, Node, Service, StoreObject, Task
from .tables import Table
from .tx import kind_of

Where = Callable[[Any], bool]


class View:
    def __init__(
        self,
        tables: dict[str, Table],
        generation: int,
        current_generation: Callable[[], int],
        index: int,
    ) -> None:
        self._tables = tables
        self._generation = generation
        self._current_generation = current_generation
        self.index = index
        """The store's applied index when this view was taken."""

    def _table(self, kind: str | type[StoreObject]) -> Table:
        if self._current_generation() != self._generation:
            raise StaleView("store changed since this view was taken; take a new view")
        return self._tables[kind_of(kind)]

    def changed_at(self, kind: str | type[StoreObject]) -> int:
        """Log index of the last change to `kind`'s objects: a cache of something derived
        from them (say the managers among 1,000 nodes) stays valid while this does not move,
        however often other kinds change."""
        return self._table(kind).changed_at

    # -- single objects ---------------------------------------------------------------------

    def get(self, kind: str | type[StoreObject], id: str) -> Any:
        """By full ID; None if absent."""
        return self._table(kind).get(id)

    def get_cluster(self, id: str) -> Cluster | None:
        return self.get("cluster", id)

    def get_node(self, id: str) -> Node | None:
        return self.get("node", id)

    def get_service(self, id: str) -> Service | None:
        return self.get("service", id)

    def get_task(self, id: str) -> Task | None:
        return self.get("task", id)

    def lookup(self, kind: str | type[StoreObject], ref: str) -> Any:
        """Resolve what a user typed, the way dockerd does: full ID, then name (hostname for
        nodes), then unique ID prefix. Raises `NotFound` ("service web not found") or
        `Ambiguous` ("node vm is ambiguous (2 matches found)")."""
        table = self._table(kind)
        kind_name = table.schema.kind
        if not ref:
            raise NotFound.for_ref(kind_name, ref)
        obj = table.get(ref)
        if obj is not None:
            return obj
        named = table.ids_named(ref)
        if len(named) == 1:
            return table.objs[named[0]]
        if len(named) > 1:
            raise Ambiguous.for_ref(kind_name, ref, len(named))
        matches = [id for id in table.objs if id.startswith(ref)]
        if len(matches) == 1:
            return table.objs[matches[0]]
        if len(matches) > 1:
            raise Ambiguous.for_ref(kind_name, ref, len(matches))
        raise NotFound.for_ref(kind_name, ref)

    def cluster(self) -> Cluster | None:
        """The swarm's cluster object (there is one once the swarm is initialised)."""
        for obj in self._table("cluster"):
            return obj  # type: ignore[return-value]
        return None

    # -- many objects -----------------------------------------------------------------------

    def list(self, kind: str | type[StoreObject]) -> list[Any]:
        """All objects of a kind, in insertion order."""
        return list(self._table(kind))

    def count(self, kind: str | type[StoreObject], **indexed: Hashable) -> int:
        if not indexed:
            return len(self._table(kind))
        if len(indexed) == 1:  # one bucket: its size
            (index, key), = indexed.items()
            return len(self._table(kind).ids_where(index, key))
        return len(self.find(kind, **indexed))

    def find(
        self,
        kind: str | type[StoreObject],
        *,
        name: str | None = None,
        name_prefix: str | None = None,
        id_prefix: str | None = None,
        where: Where | None = None,
        **indexed: Hashable,
    ) -> list[Any]:
        """Objects matching every given criterion. `indexed` keys are the table's index
        names (tasks: service_id, node_id, service_slot=(service_id, slot),
        service_state=(service_id, state, desired_state <= running), desired_state, state;
        nodes: role, state); the smallest matching bucket is scanned and the other
        criteria are checked on it. `name` is exact and case-insensitive; `name_prefix` and
        `id_prefix` are case-sensitive prefixes, as Docker's list filters are."""
        table = self._table(kind)
        candidates: Iterable[str]
        # The smallest bucket is scanned, and only the other criteria are checked on it: a
        # bucket holds exactly the objects with that key (Table keeps them on every put and
        # remove), and checking its own key again per object was a fifth of the orchestrator's
        # passes over a 100,000-replica service's tasks (issue 13).
        buckets = [(table.ids_where(i, k), i) for i, k in indexed.items()]
        if name is not None:
            buckets.append((table.ids_named(name), None))
        scanned = None
        if buckets:
            candidates, scanned = min(buckets, key=lambda b: len(b[0]))
            candidates = list(candidates)
        else:
            candidates = table.objs.keys()
        fns = table.schema.indexes
        checks = [(fns[i], k) for i, k in indexed.items() if i != scanned]
        objs = table.objs
        if not checks and name is None and name_prefix is None and id_prefix is None and where is None:
            return [objs[id] for id in candidates]
        out = []
        for id in candidates:
            obj = objs[id]
            if checks and any(fn(obj) != k for fn, k in checks):
                continue
            if name is not None and (obj.name_key() or "").lower() != name.lower():
                continue
            if name_prefix is not None and not (obj.name_key() or "").startswith(name_prefix):
                continue
            if id_prefix is not None and not id.startswith(id_prefix):
                continue
            if where is not None and not where(obj):
                continue
            out.append(obj)
        return out

    def services(self, **criteria: Any) -> list[Service]:
        return self.find("service", **criteria)

    def nodes(self, **criteria: Any) -> list[Node]:
        return self.find("node", **criteria)

    def tasks(
        self,
        *,
        service_id: str | None = None,
        node_id: str | None = None,
        slot: int | None = None,
        **criteria: Any,
    ) -> list[Task]:
        """Tasks by service, node and/or slot (a slot is only meaningful with a service)."""
        if slot is not None:
            if service_id is None:
                raise ValueError("slot needs service_id")
            criteria["service_slot"] = (service_id, slot)
        elif service_id is not None:
            criteria["service_id"] = service_id
        if node_id is not None:
            criteria["node_id"] = node_id
        return self.find("task", **criteria)
