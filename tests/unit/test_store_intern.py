"""Tasks read from Raft entries and snapshots share their equal specs and endpoints
(store/intern.py): less to validate and to hold, and the same state on every manager."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from swarmkit_py.manager.orchestrator.loop import Batch
from swarmkit_py.manager.orchestrator.taskinit import new_task
from swarmkit_py.store import InvalidTransaction, MemoryStore, Service, Transaction, new_id
from swarmkit_py.store.intern import Interner
from swarmkit_py.store.objects.enums import TaskState


def service(image: str = "nginx:1.27") -> Service:
    return Service.model_validate({
        "ID": new_id(),
        "Spec": {"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": image, "Env": ["A=1"]}},
                 "Mode": {"Replicated": {"Replicas": 3}},
                 "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080}]}},
    })


def tasks(svc: Service, n: int, first_slot: int = 1) -> list:
    now = datetime.now(UTC)
    return [new_task(svc, new_id(), now, slot=first_slot + i) for i in range(n)]


def apply(store: MemoryStore, index: int, tx: Transaction):
    result = store.apply(index, tx.encode())
    assert not isinstance(result, Exception), result
    return result


def create(store: MemoryStore, index: int, objs) -> None:
    tx = Transaction()
    for o in objs:
        tx.create(o)
    apply(store, index, tx)


def test_tasks_of_one_template_share_one_spec_and_endpoint_across_entries():
    store = MemoryStore()
    svc = service()
    create(store, 1, tasks(svc, 3))
    create(store, 2, tasks(svc, 2, first_slot=4))  # another entry, made from separate copies
    stored = store.view().tasks()
    assert len(stored) == 5
    assert len({id(t.spec) for t in stored}) == 1
    assert len({id(t.endpoint) for t in stored}) == 1
    other = service(image="nginx:1.28")
    create(store, 3, tasks(other, 2))
    specs = {t.service_id: t.spec for t in store.view().tasks()}
    assert specs[other.id] is not specs[svc.id]
    assert specs[other.id].container_spec.image == "nginx:1.28"


def test_shared_parts_read_back_equal_to_unshared_ones_and_snapshots_match():
    plain, shared = MemoryStore(), MemoryStore()
    plain.interner = None
    svc = service()
    tx = Transaction(datetime(2026, 12, 4, tzinfo=UTC))
    for t in tasks(svc, 4):
        tx.create(t)
    data = tx.encode()
    for store in (plain, shared):
        assert not isinstance(store.apply(1, data), Exception)
    assert [t.to_wire() for t in plain.view().tasks()] == [t.to_wire() for t in shared.view().tasks()]
    assert plain.snapshot() == shared.snapshot()
    restored = MemoryStore()
    restored.restore(plain.snapshot())
    assert restored.snapshot() == plain.snapshot()
    assert len({id(t.spec) for t in restored.view().tasks()}) == 1


def test_changing_one_task_through_a_clone_leaves_the_others_alone():
    """What sharing relies on: writers change clones (Batch.updated), never stored objects."""
    store = MemoryStore()
    svc = service()
    create(store, 1, tasks(svc, 3))
    first, *others = store.view().tasks()
    batch = Batch()
    changed = batch.updated(first)
    changed.spec.container_spec.env = ["A=2"]
    changed.status.state = TaskState.SHUTDOWN
    for tx in batch.transactions(datetime.now(UTC)):
        apply(store, 2, tx)
    after = {t.id: t for t in store.view().tasks()}
    assert after[first.id].spec.container_spec.env == ["A=2"]
    assert all(after[t.id].spec.container_spec.env == ["A=1"] for t in others)
    assert all(after[t.id].spec is others[0].spec for t in others)


def test_a_bad_spec_is_still_refused_as_a_whole_transaction():
    store = MemoryStore()
    svc = service()
    good = tasks(svc, 1)[0].to_wire()
    bad = {**good, "ID": new_id(), "Spec": {"ContainerSpec": {"Image": ["not", "a", "string"]}}}
    import msgpack

    data = msgpack.packb({"v": 1, "ts": "2026-12-04T00:00:00.000000Z",
                          "ops": [["create", "task", good], ["create", "task", bad]]}, use_bin_type=True)
    result = store.apply(1, data)
    assert isinstance(result, InvalidTransaction)
    assert "op 1" in str(result)
    assert store.view().tasks() == []


def test_the_interner_keeps_only_the_newest_parts():
    intern = Interner(capacity=2)
    payloads = [tasks(service(image=f"img:{i}"), 1)[0].to_wire() for i in range(3)]
    for p in payloads:
        del p["Endpoint"]  # specs only, so each payload is one part
    first = intern.task_payload(payloads[0])["Spec"]
    assert intern.task_payload(dict(payloads[0]))["Spec"] is first  # a hit
    for p in payloads[1:]:
        intern.task_payload(p)
    assert len(intern._parts) == 2
    again = intern.task_payload(dict(payloads[0]))["Spec"]
    assert again == first and again is not first  # evicted, validated anew
    assert intern.hits == 1


@pytest.mark.parametrize("part", ["Spec", "Endpoint"])
def test_a_task_without_the_part_reads_back_as_before(part):
    wire = tasks(service(), 1)[0].to_wire()
    wire.pop(part)
    out = Interner().task_payload(wire)
    assert part not in out


def test_up_to_date_checks_each_shared_spec_once_and_agrees_with_the_plain_check():
    from swarmkit_py.manager.orchestrator import uptodate
    from swarmkit_py.manager.orchestrator.plan import plan

    store = MemoryStore()
    svc = service()
    create(store, 1, [svc])
    create(store, 2, tasks(svc, 6))
    old = service(image="nginx:1.26")
    stale = tasks(old, 2, first_slot=7)
    for t in stale:  # tasks of this service still running an older template
        t.service_id = svc.id
    create(store, 3, stale)
    view = store.view()
    svc = view.get_service(svc.id)
    calls = []
    plain = uptodate.is_up_to_date

    def counted(task, service):
        calls.append(task.id)
        return plain(task, service)

    check = uptodate.UpToDate(svc)
    orig, uptodate.is_up_to_date = uptodate.is_up_to_date, counted
    try:
        verdicts = {t.id: check(t) for t in view.tasks()}
    finally:
        uptodate.is_up_to_date = orig
    assert verdicts == {t.id: plain(t, svc) for t in view.tasks()}
    assert sorted(k for k, ok in verdicts.items() if not ok) == sorted(t.id for t in stale)
    assert len(calls) == 2  # one shared spec per template, not one per task
    assert plan(view, svc).slots == [7, 8]
