"""Cluster events for `docker events`: the store's changes, as dockerd reports swarm events.

Every manager applies the same Raft log, so each one derives the events from its own store
(no leader round trip, and a follower answers `docker events` as well as the leader). What
dockerd emits for a swarm (daemon/events.go, `generateClusterEvent`): types `node`,
`service`, `network`, `secret`, `config`; actions `create`, `update`, `remove`; scope `swarm`;
`Actor.Attributes` with the object's `name` and, on updates, the `.old`/`.new` pairs of the
fields an operator watches (a node's state, availability and role; a service's image,
replica count and update state). Tasks produce no events, as in Docker.

Memory is bounded twice: a ring of the last `history` events (what `--since` can replay:
events since this manager started, up to that many) and one bounded queue per subscriber.
A subscriber that does not keep up is dropped (its stream ends) rather than ever slowing the
store's apply path, which only appends to the watch buffer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..store import WatchClosed
from ..store.watch import Event as StoreEvent

log = logging.getLogger(__name__)

KINDS = ("node", "service", "network", "secret", "config")
ACTIONS = {"create": "create", "update": "update", "delete": "remove"}
FILTERS = frozenset({"type", "event", "scope", "label", *KINDS, "container", "image",
                     "volume", "daemon", "plugin"})
HISTORY = 1024
QUEUE = 256


@dataclass(frozen=True)
class ClusterEvent:
    seq: int
    type: str
    action: str
    id: str
    attributes: dict[str, str]
    time_nano: int

    def to_api(self) -> dict[str, Any]:
        return {"Type": self.type, "Action": self.action,
                "Actor": {"ID": self.id, "Attributes": self.attributes},
                "scope": "swarm", "time": self.time_nano // 1_000_000_000,
                "timeNano": self.time_nano}


def _name(kind: str, obj: Any) -> str:
    if kind == "node":
        desc = obj.description
        return (desc.hostname if desc is not None else "") or ""
    return getattr(obj.spec, "name", "") or ""


def _node_fields(node: Any) -> dict[str, str]:
    return {"state": str(node.status.state), "availability": str(node.spec.availability),
            "role": str(node.role if node.role is not None else node.spec.role)}


def _service_fields(svc: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    cs = svc.spec.task_template.container_spec
    if cs is not None:
        out["image"] = cs.image
    if svc.spec.mode.replicated is not None:
        out["replicas"] = str(svc.spec.mode.replicated.replicas)
    if svc.update_status is not None and svc.update_status.state is not None:
        out["updatestate"] = str(svc.update_status.state)
    return out


_WATCHED: dict[str, Callable[[Any], dict[str, str]]] = {
    "node": _node_fields, "service": _service_fields}


def convert(ev: StoreEvent, seq: int, time_nano: int) -> ClusterEvent | None:
    """The Docker event for one store change, or None when nothing an operator sees changed
    (a node's heartbeat bookkeeping, a network's per-node addresses)."""
    obj = ev.obj
    if obj is None or ev.kind not in KINDS:
        return None
    action = ACTIONS.get(ev.action)
    if action is None:
        return None
    attrs = {"name": _name(ev.kind, obj)}
    fields = _WATCHED.get(ev.kind)
    if action == "update" and ev.old is not None and ev.new is not None:
        if fields is not None:
            old, new = fields(ev.old), fields(ev.new)
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    attrs[f"{key}.old"] = old.get(key, "")
                    attrs[f"{key}.new"] = new.get(key, "")
        if len(attrs) == 1 and _spec(ev.old) == _spec(ev.new):
            return None
    return ClusterEvent(seq, ev.kind, action, obj.id, attrs, time_nano)


def _spec(obj: Any) -> Any:
    spec = getattr(obj, "spec", None)
    return spec.to_wire() if spec is not None else None


class EventLog:
    """Watches a store and fans its changes out as ClusterEvents."""

    def __init__(self, store: Any, *, history: int = HISTORY, queue: int = QUEUE,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.history: deque[ClusterEvent] = deque(maxlen=history)
        self.queue_size = queue
        self.clock = clock
        self._subs: set[asyncio.Queue] = set()
        self._seq = itertools.count(1)
        self._task: asyncio.Task | None = None
        self.dropped = 0
        """Subscribers cut off for not keeping up."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="events")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for q in list(self._subs):
            self._close(q)

    async def _run(self) -> None:
        while True:
            watcher = self.store.watch(list(KINDS))
            try:
                async for ev in watcher:
                    self.publish_store_event(ev)
                return
            except WatchClosed as e:
                log.warning("event watch closed (%s); events in between are lost", e.reason)
            finally:
                watcher.close()

    def publish_store_event(self, ev: StoreEvent) -> None:
        out = convert(ev, next(self._seq), self.clock())
        if out is None:
            return
        self.history.append(out)
        for q in list(self._subs):
            try:
                q.put_nowait(out)
            except asyncio.QueueFull:
                self.dropped += 1
                self._close(q)

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(self.queue_size + 1)
        self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subs.discard(q)

    def _close(self, q: asyncio.Queue) -> None:
        """End a subscriber's stream: a None after whatever it has not read yet."""
        self._subs.discard(q)
        while q.full():
            q.get_nowait()
        q.put_nowait(None)

    def past(self, since_nano: int | None, until_nano: int | None) -> Iterator[ClusterEvent]:
        for ev in list(self.history):
            if since_nano is not None and ev.time_nano < since_nano:
                continue
            if until_nano is not None and ev.time_nano > until_nano:
                continue
            yield ev


def event_filter(filters: Mapping[str, Sequence[str]] | None,
                 invalid: Callable[[str], Exception]) -> Callable[[ClusterEvent], bool]:
    """Docker's event filters: values of one key are OR-ed, keys are AND-ed. Filters on
    things swarm events never are (container, image...) match nothing, as on a manager with
    no containers."""
    f = {k: [str(v) for v in vs] for k, vs in (filters or {}).items()}
    for key in f:
        if key not in FILTERS:
            raise invalid(f"Invalid filter '{key}'")
    for scope in f.get("scope", []):
        if scope not in ("local", "swarm"):
            raise invalid(f"Invalid filter 'scope'='{scope}'")

    def match(ev: ClusterEvent) -> bool:
        if f.get("type") and ev.type not in f["type"]:
            return False
        if f.get("event") and ev.action not in f["event"]:
            return False
        if f.get("scope") and "swarm" not in f["scope"]:
            return False
        for kind in ("container", "image", "volume", "daemon", "plugin"):
            if f.get(kind):
                return False
        for kind in KINDS:
            if f.get(kind) and (ev.type != kind or not any(
                    v in (ev.id, ev.attributes.get("name")) for v in f[kind])):
                return False
        for want in f.get("label", []):
            key, sep, value = want.partition("=")
            if key not in ev.attributes or (sep and ev.attributes[key] != value):
                return False
        return True

    return match
