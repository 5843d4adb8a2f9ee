"""The store as Raft's state machine: transactions, concurrency, indexes, lookups, snapshots."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgpack
import pytest

from swarmkit_py.store import (
    AlreadyExists,
    Ambiguous,
    InvalidSnapshot,
    InvalidTransaction,
    MemoryStore,
    NameConflict,
    Node,
    NotFound,
    SequenceError,
    Service,
    StaleView,
    StoreError,
    Task,
    TaskState,
    Transaction,
    TxApplied,
    WatchClosed,
    new_id,
)

T0 = datetime(2026, 11, 26, 22, 0, 0, tzinfo=UTC)


class Cluster:
    """A store plus a log index counter, standing in for Raft."""

    def __init__(self, seed: int = 1) -> None:
        self.store = MemoryStore()
        self.index = 0
        self.rng = random.Random(seed)
        self.now = T0

    def tx(self) -> Transaction:
        self.now += timedelta(seconds=1)
        return Transaction(self.now)

    def commit(self, tx: Transaction):
        self.index += 1
        return self.store.apply(self.index, tx.encode())

    def ok(self, tx: Transaction) -> TxApplied:
        result = self.commit(tx)
        assert isinstance(result, TxApplied), result
        return result

    def service(self, name: str, replicas: int = 1, **kw) -> Service:
        return Service(
            id=new_id(self.rng),
            spec={"Name": name, "TaskTemplate": {"ContainerSpec": {"Image": "img"}},
                  "Mode": {"Replicated": {"Replicas": replicas}}},
            **kw,
        )  # fmt: skip

    def node(self, hostname: str) -> Node:
        return Node(id=new_id(self.rng), description={"Hostname": hostname})

    def task(self, service: Service, slot: int | None, node: Node | None = None) -> Task:
        return Task(
            id=new_id(self.rng),
            service_id=service.id,
            slot=slot,
            node_id=node.id if node else None,
            spec=service.spec.task_template,
            desired_state="running",
            status={"State": "pending" if node is None else "assigned"},
        )


@pytest.fixture
def c() -> Cluster:
    return Cluster()


def test_create_stamps_version_and_times_from_the_entry(c):
    svc = c.service("web")
    svc.version.index = 99  # proposer's value is ignored on create
    result = c.ok(c.tx().create(svc))
    stored = c.store.view().get_service(svc.id)
    assert stored.version.index == c.index == result.index == 1
    assert stored.created_at == stored.updated_at == T0 + timedelta(seconds=1)
    assert stored.to_api()["CreatedAt"] == "2026-11-26T22:00:01.000000Z"
    assert result.objects == [stored]


def test_update_checks_version_and_keeps_created_at(c):
    svc = c.service("web")
    c.ok(c.tx().create(svc))
    c.ok(c.tx().create(c.node("n1")))  # unrelated entry moves the log on
    edit = c.store.view().get_service(svc.id).clone()
    edit.spec.mode.replicated.replicas = 5
    edit.created_at = T0 - timedelta(days=1)  # ignored: CreatedAt is the store's
    c.ok(c.tx().update(edit))
    stored = c.store.view().get_service(svc.id)
    assert stored.version.index == 3
    assert stored.spec.mode.replicated.replicas == 5
    assert stored.created_at == T0 + timedelta(seconds=1)
    assert stored.updated_at == T0 + timedelta(seconds=3)


def test_stale_update_fails_whole_transaction(c):
    svc = c.service("web")
    c.ok(c.tx().create(svc))
    first = c.store.view().get_service(svc.id).clone()
    second = c.store.view().get_service(svc.id).clone()
    first.spec.labels["by"] = "first"
    c.ok(c.tx().update(first))

    second.spec.labels["by"] = "second"
    other = c.service("other")
    before = c.store.snapshot()
    watcher = c.store.watch()
    result = c.commit(c.tx().create(other).update(second))
    assert isinstance(result, SequenceError)
    assert str(result) == "update out of sequence" and result.op_index == 1
    assert result.code == "Unknown"
    view = c.store.view()
    assert view.get_service(other.id) is None  # the create before it did not happen either
    assert view.get_service(svc.id).spec.labels == {"by": "first"}
    assert watcher.drain() == []
    # Only the applied index moved.
    c2 = MemoryStore()
    c2.restore(before)
    assert c2.view().list("service") == view.list("service")


def test_two_updates_of_one_object_in_one_transaction_both_check_the_prior_version(c):
    svc = c.service("web")
    c.ok(c.tx().create(svc))
    a = c.store.view().get_service(svc.id).clone()
    a.spec.labels["step"] = "1"
    b = a.clone()
    b.spec.labels["step"] = "2"
    result = c.ok(c.tx().update(a).update(b))
    assert [e.new.spec.labels["step"] for e in result.events] == ["1", "2"]
    assert result.events[1].old.spec.labels["step"] == "1"
    assert c.store.view().get_service(svc.id).spec.labels == {"step": "2"}


def test_name_conflicts(c):
    web = c.service("web")
    c.ok(c.tx().create(web))
    dup = c.service("WEB")  # names are unique regardless of case
    result = c.commit(c.tx().create(dup))
    assert isinstance(result, NameConflict) and result.code == "AlreadyExists"
    assert str(result) == "name conflicts with an existing object: service WEB already exists"

    # Renaming onto a taken name conflicts; two new objects with one name conflict.
    api = c.service("api")
    c.ok(c.tx().create(api))
    renamed = c.store.view().get_service(api.id).clone()
    renamed.spec.name = "web"
    assert isinstance(c.commit(c.tx().update(renamed)), NameConflict)
    assert isinstance(c.commit(c.tx().create(c.service("x")).create(c.service("x"))), NameConflict)

    # Delete then re-create the name in one transaction is fine.
    c.ok(c.tx().delete(web).create(dup))
    assert c.store.view().lookup("service", "web").id == dup.id


def test_nodes_may_share_a_hostname_but_lookup_says_ambiguous(c):
    a, b = c.node("vm"), c.node("vm")
    c.ok(c.tx().create(a).create(b))
    with pytest.raises(Ambiguous, match=r"node vm is ambiguous \(2 matches found\)"):
        c.store.view().lookup("node", "vm")
    assert c.store.view().lookup(Node, a.id) is c.store.view().get_node(a.id)


def test_create_existing_id_update_or_delete_missing(c):
    svc = c.service("web")
    c.ok(c.tx().create(svc))
    again = svc.clone()
    again.spec.name = "web2"
    assert isinstance(c.commit(c.tx().create(again)), AlreadyExists)
    ghost = c.service("ghost")
    res = c.commit(c.tx().update(ghost))
    assert isinstance(res, NotFound) and res.code == "NotFound"
    assert isinstance(c.commit(c.tx().delete("service", ghost.id)), NotFound)
    assert isinstance(c.commit(c.tx().delete("task", "nope")), NotFound)


def test_garbage_is_a_returned_error_and_advances_the_applied_index(c):
    for i, data in enumerate([b"", b"\xc1\xc1", b"\x93\x01\x02\x03"], start=1):
        result = c.store.apply(i, data)
        assert isinstance(result, InvalidTransaction) and isinstance(result, StoreError)
        assert c.store.applied_index == i
    # Hand-made wire carrying an invalid object.
    data = msgpack.packb(
        {"v": 1, "ts": "2026-01-01T00:00:00Z", "ops": [["create", "service", {"ID": "x", "Spec": {"Mode": {"Replicated": {"Replicas": -3}}}}]]}
    )
    result = c.store.apply(10, data)
    assert isinstance(result, InvalidTransaction) and result.op_index == 0
    assert c.store.view().list("service") == []


def test_lookup_by_id_name_prefix(c):
    rng = random.Random(3)
    web = Service(id="abc" + new_id(rng)[3:], spec={"Name": "web"})
    api = Service(id="abd" + new_id(rng)[3:], spec={"Name": "api"})
    c.ok(c.tx().create(web).create(api))
    v = c.store.view()
    assert v.lookup("service", web.id).spec.name == "web"
    assert v.lookup("service", "web").id == web.id
    assert v.lookup(Service, "WEB").id == web.id
    assert v.lookup("service", "abc").id == web.id
    with pytest.raises(Ambiguous, match="service ab is ambiguous"):
        v.lookup("service", "ab")
    with pytest.raises(NotFound, match="^service nope not found$"):
        v.lookup("service", "nope")
    with pytest.raises(NotFound):
        v.lookup("service", "")


def test_name_beats_prefix(c):
    """A service named like another's ID prefix is found by name first, as dockerd does."""
    a = Service(id="zz" + new_id(c.rng)[2:], spec={"Name": "one"})
    b = Service(id=new_id(c.rng), spec={"Name": "zz"})
    c.ok(c.tx().create(a).create(b))
    assert c.store.view().lookup("service", "zz").id == b.id


def test_indexes_follow_updates_and_deletes(c):
    n1, n2 = c.node("n1"), c.node("n2")
    svc = c.service("web", replicas=2)
    other = c.service("other")
    t1, t2 = c.task(svc, 1, n1), c.task(svc, 2, n1)
    t3 = c.task(other, 1)
    c.ok(c.tx().create(n1).create(n2).create(svc).create(other).create(t1).create(t2).create(t3))
    v = c.store.view()
    assert {t.id for t in v.tasks(service_id=svc.id)} == {t1.id, t2.id}
    assert {t.id for t in v.tasks(node_id=n1.id)} == {t1.id, t2.id}
    assert [t.id for t in v.tasks(service_id=svc.id, slot=2)] == [t2.id]
    assert [t.id for t in v.tasks(service_id=other.id, slot=1)] == [t3.id]
    assert [t.id for t in v.find("task", state="pending")] == [t3.id]
    assert v.count("task", node_id=n1.id) == 2

    # Move t2 to n2 and mark it running; reschedule t3 onto n2; delete t1.
    moved = v.get_task(t2.id).clone()
    moved.node_id = n2.id
    moved.status.state = TaskState.RUNNING
    placed = v.get_task(t3.id).clone()
    placed.node_id = n2.id
    placed.status.state = TaskState.ASSIGNED
    c.ok(c.tx().update(moved).update(placed).delete("task", t1.id))
    v = c.store.view()
    assert v.tasks(node_id=n1.id) == []
    assert {t.id for t in v.tasks(node_id=n2.id)} == {t2.id, t3.id}
    assert [t.id for t in v.tasks(service_id=svc.id)] == [t2.id]
    assert v.tasks(service_id=svc.id, slot=1) == []
    assert [t.id for t in v.find("task", state="running")] == [t2.id]
    assert v.find("task", state="pending") == []
    assert v.tasks(node_id=n2.id, where=lambda t: t.service_id == other.id)[0].id == t3.id

    # Renames move the name index.
    renamed = v.get_service(svc.id).clone()
    renamed.spec.name = "frontend"
    c.ok(c.tx().update(renamed))
    v = c.store.view()
    with pytest.raises(NotFound):
        v.lookup("service", "web")
    assert v.lookup("service", "frontend").id == svc.id
    assert [s.id for s in v.services(name_prefix="fro")] == [svc.id]
    assert [s.id for s in v.services(name="FRONTEND")] == [svc.id]
    assert [s.id for s in v.services(id_prefix=svc.id[:5])] == [svc.id]
    with pytest.raises(ValueError):
        v.find("service", bogus=1)


def test_view_refuses_to_read_after_the_store_changed(c):
    c.ok(c.tx().create(c.service("a")))
    v = c.store.view()
    assert len(v.list("service")) == 1
    failed = c.commit(c.tx().create(c.service("a")))  # a failed tx changes nothing
    assert isinstance(failed, NameConflict)
    assert len(v.list("service")) == 1
    c.ok(c.tx().create(c.service("b")))
    with pytest.raises(StaleView):
        v.list("service")
    assert len(c.store.view().list("service")) == 2


def test_apply_does_not_read_the_clock(c, monkeypatch):
    import swarmkit_py.store.timefmt as timefmt

    svc = c.service("web")
    tx = c.tx().create(svc)
    monkeypatch.setattr(timefmt, "utcnow", lambda: pytest.fail("apply read the clock"))
    c.ok(tx)
    assert c.store.view().get_service(svc.id).updated_at == tx.timestamp


def _workload(c: Cluster) -> None:
    """A mixed history with successes and failures."""
    nodes = [c.node(f"n{i}") for i in range(3)]
    tx = c.tx()
    for n in nodes:
        tx.create(n)
    c.ok(tx)
    svc = c.service("web", replicas=3)
    c.ok(c.tx().create(svc))
    tasks = [c.task(svc, s + 1, nodes[s]) for s in range(3)]
    tx = c.tx()
    for t in tasks:
        tx.create(t)
    c.ok(tx)
    stale = c.store.view().get_task(tasks[0].id).clone()
    running = stale.clone()
    running.status.state = TaskState.RUNNING
    c.ok(c.tx().update(running))
    assert isinstance(c.commit(c.tx().update(stale)), SequenceError)
    assert isinstance(c.commit(c.tx().create(c.service("web"))), NameConflict)
    c.ok(c.tx().delete("task", tasks[2].id))
    c.store.apply(c.index + 1, b"junk")
    c.index += 1


def test_same_log_gives_byte_identical_snapshots():
    leader = Cluster(seed=5)
    log: list[tuple[int, bytes]] = []
    apply = leader.store.apply

    def recording(index: int, data: bytes):
        log.append((index, data))
        return apply(index, data)

    leader.store.apply = recording  # type: ignore[method-assign]
    _workload(leader)
    follower = MemoryStore()
    results = [follower.apply(i, d) for i, d in log]
    assert [type(r) for r in results].count(SequenceError) == 1
    assert follower.snapshot() == leader.store.snapshot()
    # An independent run of the same seeded history ends in the same bytes too.
    twin = Cluster(seed=5)
    _workload(twin)
    assert twin.store.snapshot() == leader.store.snapshot()
    other = Cluster(seed=6)
    _workload(other)
    assert other.store.snapshot() != leader.store.snapshot()  # different IDs, different state


def test_snapshot_restore_round_trip(c):
    _workload(c)
    snap = c.store.snapshot()
    other = MemoryStore()
    other.restore(snap)
    assert other.snapshot() == snap
    assert other.applied_index == c.store.applied_index
    v1, v2 = c.store.view(), other.view()
    for kind in ("cluster", "node", "service", "task"):
        by_id = sorted(v1.list(kind), key=lambda o: o.id)
        assert by_id == sorted(v2.list(kind), key=lambda o: o.id)
    # Indexes are rebuilt, not just the tables.
    svc = v2.lookup("service", "web")
    assert len(v2.tasks(service_id=svc.id)) == 2
    assert v2.tasks(service_id=svc.id, slot=3) == []
    # And the restored store carries on identically.
    nxt = Transaction(T0).create(Service(id=new_id(random.Random(9)), spec={"Name": "late"}))
    assert isinstance(c.store.apply(100, nxt.encode()), TxApplied)
    assert isinstance(other.apply(100, nxt.encode()), TxApplied)
    assert c.store.snapshot() == other.snapshot()


def test_restore_replaces_state_and_closes_watchers(c):
    c.ok(c.tx().create(c.service("web")))
    w = c.store.watch()
    view = c.store.view()
    c.store.restore(MemoryStore().snapshot())
    assert c.store.view().list("service") == []
    with pytest.raises(WatchClosed, match="restored"):
        w.drain()
    with pytest.raises(StaleView):
        view.list("service")
    with pytest.raises(InvalidSnapshot):
        c.store.restore(b"not a snapshot")
    with pytest.raises(InvalidSnapshot):
        c.store.restore(b"\x81\xa1v\x01")


def test_transaction_builder_rejects_unusable_ops():
    tx = Transaction(T0)
    with pytest.raises(ValueError):
        tx.create(Service())  # no ID
    with pytest.raises(ValueError):
        tx.delete("service")
    with pytest.raises(ValueError):
        tx.delete("volume", "x")
    with pytest.raises(TypeError):
        tx.create({"ID": "x"})  # type: ignore[arg-type]
    assert len(tx) == 0
    decoded = Transaction.decode(Transaction(T0).create(Service(id="a" * 25)).delete("task", "b").encode())
    assert decoded.timestamp == T0
    assert [(o.action, o.kind, o.id) for o in decoded.ops] == [
        ("create", "service", "a" * 25),
        ("delete", "task", "b"),
    ]


def test_a_kind_changed_at_moves_only_when_its_objects_change(c):
    n = c.node("a")
    c.ok(c.tx().create(n))
    node_index = c.index
    svc = c.service("web")
    c.ok(c.tx().create(svc).create(c.task(svc, 1)))
    view = c.store.view()
    assert view.changed_at("node") == node_index
    assert view.changed_at("task") == view.changed_at("service") == c.index
    failed = c.commit(c.tx().create(c.node("b")).create(svc))  # refused as a whole
    assert isinstance(failed, AlreadyExists)
    assert c.store.view().changed_at("node") == node_index
    c.ok(c.tx().delete(n))
    assert c.store.view().changed_at("node") == c.index
    restored = MemoryStore()
    restored.restore(c.store.snapshot())
    assert restored.view().changed_at("node") == restored.view().changed_at("task") == c.index
