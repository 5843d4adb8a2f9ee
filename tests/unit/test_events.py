"""Cluster events from store changes (manager/events.py): what changes become which Docker
event, filters, replay bounds, and a subscriber that does not read being cut off instead of
growing without bound."""

from __future__ import annotations

import asyncio

import pytest

from swarmkit_py.manager.events import EventLog, event_filter
from swarmkit_py.store import MemoryStore, Secret, SecretSpec, Transaction


class Invalid(Exception):
    pass


def apply(store: MemoryStore, tx: Transaction) -> None:
    store.apply(store.applied_index + 1, tx.encode())


async def test_changes_become_docker_events_and_slow_readers_are_cut_off():
    store = MemoryStore()
    clock = iter(range(1_000_000_000, 10**12, 1_000_000_000))
    log = EventLog(store, history=4, queue=2, clock=lambda: next(clock))
    log.start()
    await asyncio.sleep(0)
    reader, idle = log.subscribe(), log.subscribe()
    secret = Secret(id="s1", spec=SecretSpec(name="db"), data="eA==")
    apply(store, Transaction().create(secret))
    got = await asyncio.wait_for(reader.get(), 1)
    assert got.to_api() == {"Type": "secret", "Action": "create",
                            "Actor": {"ID": "s1", "Attributes": {"name": "db"}},
                            "scope": "swarm", "time": 1, "timeNano": 1_000_000_000}
    same = store.view().get("secret", "s1").clone()
    apply(store, Transaction().update(same))  # nothing visible changed: no event
    labelled = store.view().get("secret", "s1").clone()
    labelled.spec.labels = {"a": "b"}
    apply(store, Transaction().update(labelled))
    apply(store, Transaction().delete("secret", "s1"))
    assert [(await asyncio.wait_for(reader.get(), 1)).action for _ in range(2)] == \
        ["update", "remove"]
    for i in range(3):
        apply(store, Transaction().create(Secret(id=f"x{i}", spec=SecretSpec(name=f"x{i}"))))
    await asyncio.sleep(0.05)
    # `idle` read nothing: cut off after `queue` events, its stream ends with None
    items = [idle.get_nowait() for _ in range(idle.qsize())]
    assert items[-1] is None and len(items) <= 3 and log.dropped >= 1
    assert len(log.history) == 4  # bounded ring
    assert [e.action for e in log.past(4_000_000_000, 5_000_000_000)] == ["remove", "create"]
    await log.stop()


def test_filters():
    from swarmkit_py.manager.events import ClusterEvent

    ev = ClusterEvent(1, "service", "update", "abc", {"name": "web", "replicas.new": "2"}, 5)
    assert event_filter({"type": ["service"], "event": ["update"]}, Invalid)(ev)
    assert event_filter({"service": ["web"]}, Invalid)(ev)
    assert event_filter({"service": ["abc"]}, Invalid)(ev)
    assert not event_filter({"node": ["web"]}, Invalid)(ev)
    assert not event_filter({"container": ["x"]}, Invalid)(ev)
    assert not event_filter({"scope": ["local"]}, Invalid)(ev)
    assert event_filter({"label": ["replicas.new=2"]}, Invalid)(ev)
    with pytest.raises(Invalid, match="Invalid filter 'colour'"):
        event_filter({"colour": ["red"]}, Invalid)
