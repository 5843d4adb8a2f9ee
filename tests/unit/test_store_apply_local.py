"""A member applies the transactions it proposed from the writer's own objects
(`MemoryStore.apply_local`) when the writer handed them over, instead of decoding the entry it
just encoded; every other member decodes. Both must reach the same state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from swarmkit_py.manager.orchestrator.taskinit import new_task
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.store import MemoryStore, SequenceError, Service, Transaction, memory, new_id
from swarmkit_py.store.objects.enums import TaskState


def service() -> Service:
    return Service.model_validate({
        "ID": new_id(),
        "Spec": {"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "nginx:1.27"}},
                 "Mode": {"Replicated": {"Replicas": 3}}},
    })


def running(task, when: datetime):
    status = task.status.model_copy(update={"state": TaskState.RUNNING, "timestamp": when,
                                            "message": "started"})
    return task.model_copy(update={"status": status, "node_id": "n1"})


def both(index: int, tx: Transaction, local: MemoryStore, other: MemoryStore):
    data = tx.encode()
    a, b = local.apply_local(index, data, tx), other.apply(index, data)
    return a, b


def test_a_handed_over_transaction_reaches_the_state_its_bytes_give_every_other_member():
    local, other = MemoryStore(), MemoryStore()
    svc = service()
    now = datetime.now(UTC)
    created = [new_task(svc, new_id(), now, slot=i + 1) for i in range(3)]
    tx = Transaction(now, handed_over=True)
    tx.create(svc)
    for t in created:
        tx.create(t)
    a, b = both(1, tx, local, other)
    assert [e.new.to_wire() for e in a.events] == [e.new.to_wire() for e in b.events]
    assert local.snapshot() == other.snapshot()

    stored = local.view().tasks()
    tx = Transaction(datetime.now(UTC), handed_over=True)
    updates = [running(t, datetime.now(UTC)) for t in stored]
    for u in updates:
        tx.update(u)
    a, b = both(2, tx, local, other)
    assert local.snapshot() == other.snapshot()
    kept = {t.id: t for t in local.view().tasks()}
    for u in updates:
        # kept from the writer's object (its status is that very object), not decoded ...
        assert kept[u.id].status is u.status and kept[u.id] is not u
        # ... and the store's stamps are on its own copy, never on the writer's object
        assert kept[u.id].version.index == 2 and u.version.index == 1
        assert u.updated_at is None or u.updated_at != kept[u.id].updated_at
    assert all(t.status is not u.status for t in other.view().tasks() for u in updates)


def test_a_refused_handed_over_transaction_is_refused_the_same_and_changes_nothing():
    local, other = MemoryStore(), MemoryStore()
    svc = service()
    task = new_task(svc, new_id(), datetime.now(UTC), slot=1)
    tx = Transaction(handed_over=True)
    tx.create(svc).create(task)
    both(1, tx, local, other)
    stale = running(local.view().get_task(task.id), datetime.now(UTC))
    tx = Transaction(handed_over=True)
    tx.update(running(local.view().get_task(task.id), datetime.now(UTC)))
    both(2, tx, local, other)
    tx = Transaction(handed_over=True)  # read at version 1, stored at 2 now
    tx.update(stale)
    a, b = both(3, tx, local, other)
    assert isinstance(a, SequenceError) and isinstance(b, SequenceError)
    assert local.snapshot() == other.snapshot()
    assert local.applied_index == other.applied_index == 3


def test_a_transaction_not_handed_over_is_decoded():
    store = MemoryStore()
    svc = service()
    tx = Transaction()
    tx.create(svc)
    store.apply_local(1, tx.encode(), tx)
    assert store.view().get_service(svc.id) is not svc
    assert store.view().get_service(svc.id).spec is not svc.spec


def test_the_check_catches_an_object_that_its_own_entry_does_not_give_back(monkeypatch):
    """A field set without validation to what the model reads back otherwise (a naive time
    here) would leave the proposer's store unlike everyone else's: with the check on (the
    suite runs with SWARMKIT_STORE_CHECK_LOCAL=1) it raises instead."""
    monkeypatch.setattr(memory, "CHECK_LOCAL", True)
    store = MemoryStore()
    svc = service()
    task = new_task(svc, new_id(), datetime.now(UTC), slot=1)
    tx = Transaction(handed_over=True)
    tx.create(svc).create(task)
    store.apply_local(1, tx.encode(), tx)
    naive = datetime.now(UTC).replace(tzinfo=None)
    bad = store.view().get_task(task.id)
    bad = bad.model_copy(update={"status": bad.status.model_copy(update={"timestamp": naive})})
    tx = Transaction(handed_over=True)
    tx.update(bad)
    with pytest.raises(AssertionError, match="not what its entry decodes to"):
        store.apply_local(2, tx.encode(), tx)
    assert store.applied_index == 1  # nothing applied


async def test_the_local_proposer_applies_handed_over_writes_from_their_objects():
    p = LocalProposer()
    svc = service()
    task = new_task(svc, new_id(), datetime.now(UTC), slot=1)
    tx = Transaction(handed_over=True)
    tx.create(svc).create(task)
    await p.propose(tx)
    assert p.store.view().get_task(task.id).spec is task.spec
