"""Watch streams: ordering, filtering, and never letting a slow consumer block apply."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from swarmkit_py.store import (
    MemoryStore,
    Node,
    Service,
    Task,
    Transaction,
    TxApplied,
    WatchClosed,
    WatchOverflow,
    new_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Log:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.index = 0
        self.rng = random.Random(11)

    def commit(self, tx: Transaction):
        self.index += 1
        return self.store.apply(self.index, tx.encode())

    def service(self, name: str) -> Service:
        return Service(id=new_id(self.rng), spec={"Name": name})


@pytest.fixture
def log() -> Log:
    return Log()


def test_events_arrive_in_op_order_with_old_and_new(log):
    w = log.store.watch()
    svc = log.service("web")
    task = Task(id=new_id(log.rng), service_id=svc.id, slot=1)
    assert isinstance(log.commit(Transaction(T0).create(svc).create(task)), TxApplied)
    edit = log.store.view().get_service(svc.id).clone()
    edit.spec.labels["a"] = "b"
    log.commit(Transaction(T0).update(edit).delete("task", task.id))

    events = w.drain()
    assert [(e.kind, e.action, e.index) for e in events] == [
        ("service", "create", 1),
        ("task", "create", 1),
        ("service", "update", 2),
        ("task", "delete", 2),
    ]
    assert events[0].old is None and events[0].new.version.index == 1
    assert events[2].old.spec.labels == {} and events[2].new.spec.labels == {"a": "b"}
    assert events[3].new is None and events[3].obj.id == task.id
    assert w.drain() == []


def test_commit_markers_only_when_asked(log):
    plain = log.store.watch()
    batched = log.store.watch(commits=True)
    log.commit(Transaction(T0).create(log.service("a")).create(log.service("b")))
    log.commit(Transaction(T0).create(log.service("c")))
    assert [e.action for e in plain.drain()] == ["create"] * 3
    assert [e.action for e in batched.drain()] == ["create", "create", "commit", "create", "commit"]


def test_kind_action_and_custom_filters(log):
    nodes = log.store.watch(kinds=[Node])
    updates = log.store.watch("service", actions={"update"})
    named = log.store.watch(kinds="service", filter=lambda e: e.obj.spec.name.startswith("w"))
    svc = log.service("web")
    log.commit(Transaction(T0).create(svc).create(log.service("api")))
    edit = log.store.view().get_service(svc.id).clone()
    log.commit(Transaction(T0).update(edit))
    assert nodes.drain() == []
    assert [e.action for e in updates.drain()] == ["update"]
    assert [(e.action, e.obj.spec.name) for e in named.drain()] == [("create", "web"), ("update", "web")]
    with pytest.raises(ValueError):
        log.store.watch(kinds=["volume"])


def test_failed_transaction_emits_nothing(log):
    log.commit(Transaction(T0).create(log.service("web")))
    w = log.store.watch(commits=True)
    result = log.commit(Transaction(T0).create(log.service("x")).create(log.service("web")))
    assert not isinstance(result, TxApplied)
    assert w.drain() == []


def test_slow_watcher_is_closed_and_apply_goes_on(log):
    slow = log.store.watch(limit=3)
    fast = log.store.watch()
    for i in range(3):
        log.commit(Transaction(T0).create(log.service(f"s{i}")))
    assert len(slow) == 3 and not slow.closed
    result = log.commit(Transaction(T0).create(log.service("s3")))
    assert isinstance(result, TxApplied)
    assert slow.closed and isinstance(slow.error, WatchOverflow)
    with pytest.raises(WatchOverflow, match="too slow"):
        slow.get_nowait()
    assert len(fast.drain()) == 4
    assert log.store.watcher_count == 1
    assert len(log.store.view().list("service")) == 4


def test_a_raising_filter_closes_only_its_watcher(log):
    def boom(event):
        raise RuntimeError("bug")

    bad = log.store.watch(filter=boom)
    good = log.store.watch()
    assert isinstance(log.commit(Transaction(T0).create(log.service("web"))), TxApplied)
    with pytest.raises(WatchClosed, match="RuntimeError"):
        bad.drain()
    assert len(good.drain()) == 1


async def test_async_consumer_wakes_on_apply_and_stops_on_close(log):
    w = log.store.watch(kinds="service")
    received: list[str] = []

    async def consume():
        async for event in w:
            received.append(event.obj.spec.name)
            if len(received) == 3:
                w.close()

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)  # the consumer is now parked in get()
    for name in ("a", "b", "c", "d"):
        log.commit(Transaction(T0).create(log.service(name)))
        await asyncio.sleep(0)
    await asyncio.wait_for(consumer, timeout=5)
    assert received == ["a", "b", "c"]
    assert w.closed and log.store.watcher_count == 0
    with pytest.raises(WatchClosed):
        await w.get()


async def test_overflow_reaches_an_awaiting_consumer(log):
    w = log.store.watch(limit=1)

    async def two_events_in_one_tx():
        await asyncio.sleep(0)
        log.commit(Transaction(T0).create(log.service("a")).create(log.service("b")))

    asyncio.get_running_loop().create_task(two_events_in_one_tx())
    with pytest.raises(WatchOverflow):
        await asyncio.wait_for(w.get(), timeout=5)


def test_view_then_watch_sees_everything_once(log):
    log.commit(Transaction(T0).create(log.service("before")))
    view = log.store.view()
    w = log.store.watch()  # no await in between: the view's state plus every later change
    names = [s.spec.name for s in view.list("service")]
    log.commit(Transaction(T0).create(log.service("after")))
    names += [e.obj.spec.name for e in w.drain()]
    assert names == ["before", "after"]
