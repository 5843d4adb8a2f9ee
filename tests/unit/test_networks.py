"""Networks: the allocator, IPAM and the /networks rules, on a local store (no Raft, no engine)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from swarmkit_py.manager.allocator import Allocator, ipam
from swarmkit_py.manager.allocator.needs import is_allocated
from swarmkit_py.manager.controlapi.errors import InvalidArgument
from swarmkit_py.manager.controlapi.networks import parse_network_create
from swarmkit_py.manager.orchestrator.taskinit import new_task
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.store import (
    EndpointSpec,
    MemoryStore,
    NetworkAttachment,
    Node,
    PortConfig,
    Service,
    ServiceSpec,
    TaskSpec,
    TaskState,
    TaskStatus,
    Transaction,
)


def _store():
    store = MemoryStore()
    return store, LocalProposer(store)


async def _settle(alloc, proposer):
    await alloc._pass_until_quiet()


async def test_ingress_vips_and_task_addresses_never_overlap_and_are_released():
    store, proposer = _store()
    await proposer.propose(Transaction().create(Node(id="n1")).create(Node(id="n2")))
    alloc = Allocator(proposer)
    await _settle(alloc, proposer)
    view = store.view()
    (ingress,) = view.list("network")
    assert ingress.spec.ingress and ingress.subnet == "10.0.0.0/24" and ingress.vni == 4096
    assert len(set(ingress.node_addresses.values())) == 2

    net = ipam.allocate_network(view.list("network"), parse_network_create(
        {"Name": "back", "Driver": "overlay"}), "netback")
    assert net.subnet == "10.0.1.0/24" and net.vni == 4097
    svc = Service(id="s1", spec=ServiceSpec(
        name="web", task_template=TaskSpec(container_spec={"Image": "x"},
                                           networks=[{"Target": "netback"}]),
        endpoint_spec=EndpointSpec(ports=[PortConfig(target_port=80)])))
    now = datetime.now(UTC)
    tasks = [new_task(svc, f"t{i}", now, slot=i) for i in range(1, 4)]
    tx = Transaction().create(net).create(svc)
    for t in tasks:
        tx.create(t)
    await proposer.propose(tx)
    assert not any(is_allocated(t) for t in tasks)
    await _settle(alloc, proposer)
    view = store.view()
    svc = view.get_service("s1")
    assert svc.endpoint.ports[0].published_port == 30000
    assert {v.network_id for v in svc.endpoint.virtual_ips} == {ingress.id, "netback"}
    seen = set()
    for t in view.list("task"):
        assert is_allocated(t)
        assert [a.network_id for a in t.networks_attachments] == [ingress.id, "netback"]
        for a in t.networks_attachments:
            seen.add(a.addresses[0])
    seen |= {v.addr for v in svc.endpoint.virtual_ips}
    seen |= {f"{a}/24" for n in view.list("network") for a in n.node_addresses.values()}
    assert len(seen) == 3 * 2 + 2 + 2 * 2  # nothing handed out twice

    # A task that ended frees its addresses for a later task.
    t1 = view.get_task("t1").clone()
    t1.status = TaskStatus(state=TaskState.FAILED)
    await proposer.propose(Transaction().update(t1))
    alloc.tasks.sync()
    pools = alloc._pools(store.view(), {n.id: n for n in store.view().list("network")})
    freed = t1.networks_attachments[1].addresses[0]
    assert not pools["netback"].in_use(freed)
    still = store.view().get_task("t2").networks_attachments[1].addresses[0]
    assert pools["netback"].in_use(still)


def test_bad_network_requests_say_what_to_do():
    with pytest.raises(InvalidArgument, match="-d overlay"):
        parse_network_create({"Name": "x"})
    with pytest.raises(Exception, match='plugin "weave" not found'):
        parse_network_create({"Name": "x", "Driver": "weave"})
    a = ipam.allocate_network([], parse_network_create(
        {"Name": "a", "Driver": "overlay", "IPAM": {"Config": [{"Subnet": "10.9.0.0/16"}]}}), "a")
    with pytest.raises(ipam.IPAMError, match="overlaps network 'a'"):
        ipam.allocate_network([a], parse_network_create(
            {"Name": "b", "Driver": "overlay", "IPAM": {"Config": [{"Subnet": "10.9.3.0/24"}]}}), "b")
    with pytest.raises(ipam.IPAMError, match="host bits"):
        ipam.parse_subnet("10.9.3.1/24")


async def test_attachable_networks_give_each_node_a_block_tasks_never_get():
    store, proposer = _store()
    await proposer.propose(Transaction().create(Node(id="n1")).create(Node(id="n2")))
    net = ipam.allocate_network([], parse_network_create(
        {"Name": "att", "Driver": "overlay", "Attachable": True,
         "IPAM": {"Config": [{"Subnet": "10.5.0.0/24"}]}}), "att")
    svc = Service(id="s1", spec=ServiceSpec(
        name="web", task_template=TaskSpec(container_spec={"Image": "x"},
                                           networks=[{"Target": "att"}])))
    now = datetime.now(UTC)
    tx = Transaction().create(net).create(svc)
    for i in range(1, 6):
        tx.create(new_task(svc, f"t{i}", now, slot=i))
    await proposer.propose(tx)
    alloc = Allocator(proposer)
    await alloc._pass_until_quiet()
    view = store.view()
    net = view.get("network", "att")
    assert net.node_ranges == {"n1": "10.5.0.240/28", "n2": "10.5.0.224/28"}
    blocks = [ipaddress.ip_network(b) for b in net.node_ranges.values()]
    for t in view.list("task"):
        ip = ipaddress.ip_address(t.networks_attachments[0].addresses[0].split("/")[0])
        assert not any(ip in b for b in blocks)


def test_the_sdks_null_ipam_fields_are_absent_fields():
    spec = parse_network_create({"Name": "x", "Driver": "overlay", "IPAM": {"Driver": "default",
        "Config": [{"Subnet": "10.7.0.0/24", "IPRange": None, "Gateway": None,
                    "AuxiliaryAddresses": None}]}})
    assert spec.ipam[0].subnet == "10.7.0.0/24"
    with pytest.raises(InvalidArgument, match="--ip-range"):
        parse_network_create({"Name": "x", "Driver": "overlay",
                              "IPAM": {"Config": [{"Subnet": "10.7.0.0/24", "IPRange": "10.7.0.0/28"}]}})


def test_network_list_filters():
    from swarmkit_py.manager.controlapi.networks import network_filter
    view = MemoryStore().view()
    n = ipam.allocate_network([], parse_network_create(
        {"Name": "back", "Driver": "overlay", "Labels": {"a": "b"}}), "id1")
    assert network_filter({"dangling": ["true"], "label": ["a=b"], "name": ["ac"]}, view)(n)
    assert not network_filter({"dangling": ["false"]}, view)(n)
    assert not network_filter({"type": ["builtin"]}, view)(n)
    with pytest.raises(InvalidArgument, match="dangling"):
        network_filter({"dangling": ["maybe"]}, view)


async def test_a_network_is_released_by_tasks_told_to_stop_and_by_a_deleted_services_tasks():
    """`docker stack rm` removes the services, then at once their networks: the tasks are
    still stopping. As in Swarm, only tasks meant to run (and not past running) hold a network;
    a deleted service's tasks are about to be told to stop, so they do not either."""
    from swarmkit_py.manager.controlapi.networks import tasks_holding

    store, proposer = _store()
    net = ipam.allocate_network([], parse_network_create({"Name": "back", "Driver": "overlay"}),
                                "netback")
    svc = Service(id="s1", spec=ServiceSpec(name="web", task_template=TaskSpec(
        container_spec={"Image": "x"}, networks=[{"Target": "netback"}])))
    now = datetime.now(UTC)
    run, stopping = new_task(svc, "t1", now, slot=1), new_task(svc, "t2", now, slot=2)
    for t in (run, stopping):
        t.status = TaskStatus(state=TaskState.RUNNING)
        t.networks_attachments = [NetworkAttachment(network_id="netback",
                                                    addresses=["10.0.1.5/24"])]
    stopping.desired_state = TaskState.SHUTDOWN
    await proposer.propose(Transaction().create(net).create(svc).create(run).create(stopping))
    assert [t.id for t in tasks_holding(store.view(), net)] == ["t1"]
    await proposer.propose(Transaction().delete("service", "s1"))
    assert tasks_holding(store.view(), net) == []


async def test_a_full_network_leaves_the_rest_allocated_and_says_so(caplog):
    """Issue 13, 1,000 simulated nodes: a node address for each node on ingress (a /24, as
    in Docker) ran out after 253 nodes, and the failure of that one allocation failed every
    allocator pass, so nothing else was ever allocated again. Now the nodes (or tasks) that do
    not fit go without, and the log says which network is full."""
    store, proposer = _store()
    net = ipam.allocate_network([], parse_network_create(
        {"Name": "small", "Driver": "overlay", "IPAM": {"Config": [{"Subnet": "10.6.0.0/29"}]}}), "small")
    svc = Service(id="s1", spec=ServiceSpec(
        name="web", task_template=TaskSpec(container_spec={"Image": "x"}, networks=[{"Target": "small"}])))
    tx = Transaction().create(net).create(svc)
    for i in range(8):
        tx.create(Node(id=f"n{i}"))
    tx.create(new_task(svc, "t1", datetime.now(UTC), slot=1))
    await proposer.propose(tx)
    alloc = Allocator(proposer)
    await alloc._pass_until_quiet()
    view = store.view()
    assert len(view.get("network", "small").node_addresses) == 5  # 6 hosts, one the gateway
    assert not is_allocated(view.get_task("t1"))  # no address left for it: it waits
    assert view.get_service("s1").endpoint is None  # nor for its virtual IP
    assert any("network small (10.6.0.0/29) is full: 3 node(s)" in r.message for r in caplog.records)
    big = ipam.allocate_network(view.list("network"), parse_network_create(
        {"Name": "big", "Driver": "overlay", "IPAM": {"Config": [{"Subnet": "10.7.0.0/24"}]}}), "big")
    await proposer.propose(Transaction().create(big))
    await alloc._pass_until_quiet()
    assert len(store.view().get("network", "big").node_addresses) == 8  # the full one blocks nothing


async def test_a_task_version_is_looked_at_once(monkeypatch):
    """Every pass used to ask every task whether it wants networks (10,000 tasks on every pass
    of a fill); the allocator now follows the task stream, so each stored version is asked
    once, when it is written."""
    from swarmkit_py.manager.allocator import loop as alloc_loop

    store, proposer = _store()
    await proposer.propose(Transaction().create(Node(id="n1")))
    svc = Service(id="s1", spec=ServiceSpec(name="plain", task_template=TaskSpec(container_spec={"Image": "x"})))
    now = datetime.now(UTC)
    tx = Transaction().create(svc)
    for i in range(1, 6):
        tx.create(new_task(svc, f"t{i}", now, slot=i))
    await proposer.propose(tx)
    asked: list[str] = []
    real = alloc_loop.wants_networks

    def counting(task):
        asked.append(task.id)
        return real(task)

    monkeypatch.setattr(alloc_loop, "wants_networks", counting)
    alloc = Allocator(proposer)
    await _settle(alloc, proposer)
    await _settle(alloc, proposer)
    assert sorted(asked) == [f"t{i}" for i in range(1, 6)]  # once each over two passes
    t2 = store.view().get_task("t2").clone()  # a new version: asked again
    t2.spec = TaskSpec(container_spec={"Image": "x"}, networks=[{"Target": "none-yet"}])
    await proposer.propose(Transaction().update(t2))
    asked.clear()
    await _settle(alloc, proposer)
    assert asked == ["t2"]


def _task_with(svc, task_id, *, addresses=(), state=TaskState.RUNNING, desired=TaskState.RUNNING):
    t = new_task(svc, task_id, datetime.now(UTC), slot=int(task_id[1:]))
    t.status = TaskStatus(state=state)
    t.desired_state = desired
    if addresses:
        t.networks_attachments = [NetworkAttachment(network_id=n, addresses=[a]) for n, a in addresses]
    return t


def _index_from_scratch(store):
    """What the allocator's task index should say, read from every task (written apart from
    the index's own code, so that a shared mistake cannot hide)."""
    held: dict[str, dict[str, int]] = {}
    waiting = {}
    for t in store.view().list("task"):
        if t.status.state > TaskState.RUNNING:
            continue  # ended: holds nothing and is owed nothing
        for a in t.networks_attachments or []:
            for addr in a.addresses:
                on = held.setdefault(a.network_id, {})
                on[addr.split("/")[0]] = on.get(addr.split("/")[0], 0) + 1
        if (t.networks_attachments is None and t.desired_state <= TaskState.RUNNING
                and t.service_id == "s1"):  # only s1's spec names a network
            waiting[t.id] = None
    return held, waiting


def _same(index, expected) -> bool:
    held = {n: on for n, on in index.held.items() if on}  # the index keeps emptied networks
    return (held, set(index.waiting)) == (expected[0], set(expected[1]))


async def test_the_task_index_follows_the_store_as_a_full_read_would():
    """The allocator's task index (addresses held, tasks owed addresses) is kept from the
    task stream: after any run of creates, updates, ends and deletes it must say what reading
    every task again says, or two tasks could get one address."""
    import random

    from swarmkit_py.manager.allocator.loop import TaskIndex

    store, proposer = _store()
    svc = Service(id="s1", spec=ServiceSpec(name="web", task_template=TaskSpec(
        container_spec={"Image": "x"}, networks=[{"Target": "netback"}])))
    plain = Service(id="s2", spec=ServiceSpec(name="plain", task_template=TaskSpec(container_spec={"Image": "x"})))
    await proposer.propose(Transaction().create(svc).create(plain))
    index = TaskIndex(store)
    index.sync()
    rng = random.Random(7)
    live: set[str] = set()
    seen_held = seen_waiting = 0
    for step in range(300):
        tx = Transaction()
        touched: set[str] = set()
        for _ in range(rng.randint(1, 4)):
            task_id = f"t{rng.randint(1, 40)}"
            if task_id in touched:  # one change per task per transaction
                continue
            touched.add(task_id)
            owner = rng.choice((svc, svc, plain))
            addresses = [("netback", f"10.0.1.{rng.randint(2, 12)}/24")] if rng.random() < 0.6 else []
            if rng.random() < 0.3:
                addresses.append(("ingress", f"10.0.0.{rng.randint(2, 6)}/24"))  # shared on purpose
            state = rng.choice((TaskState.NEW, TaskState.RUNNING, TaskState.RUNNING, TaskState.FAILED))
            desired = rng.choice((TaskState.RUNNING, TaskState.RUNNING, TaskState.SHUTDOWN))
            roll = rng.random()
            if task_id not in live:
                tx.create(_task_with(owner, task_id, addresses=addresses, state=state, desired=desired))
                live.add(task_id)
            elif roll < 0.25:
                tx.delete("task", task_id)
                live.discard(task_id)
            else:
                t = store.view().get_task(task_id).clone()
                t.status = TaskStatus(state=state)
                t.desired_state = desired
                t.networks_attachments = [NetworkAttachment(network_id=n, addresses=[a])
                                          for n, a in addresses] or rng.choice((None, []))
                tx.update(t)
        await proposer.propose(tx)
        if rng.random() < 0.3:  # the index is read between bursts of transactions
            index.sync()
            assert _same(index, _index_from_scratch(store)), step
            seen_held += any(index.held.values())
            seen_waiting += bool(index.waiting)
    index.sync()
    assert _same(index, _index_from_scratch(store))
    assert index.rebuilds == 1
    assert seen_held > 10 and seen_waiting > 10  # the run did exercise both

    # A snapshot restored under it (the stream is lost): read again from every task.
    other = MemoryStore()
    other.restore(store.snapshot())
    t = other.view().get_task(sorted(live)[0]).clone()
    t.status = TaskStatus(state=TaskState.FAILED)
    other.apply_tx(other.applied_index + 1, Transaction().update(t))
    store.restore(other.snapshot())
    index.sync()
    assert index.rebuilds == 2
    assert _same(index, _index_from_scratch(store))
    index.close()


async def test_a_task_address_held_is_never_given_again_and_an_ended_ones_is():
    """Through the allocator's passes (the index and the lazily made pools together): a new
    task never gets an address a live task holds, and gets one an ended task gave back."""
    store, proposer = _store()
    net = ipam.allocate_network([], parse_network_create(
        {"Name": "tiny", "Driver": "overlay", "IPAM": {"Config": [{"Subnet": "10.6.0.0/29"}]}}), "tiny")
    svc = Service(id="s1", spec=ServiceSpec(name="web", task_template=TaskSpec(
        container_spec={"Image": "x"}, networks=[{"Target": "tiny"}])))
    await proposer.propose(Transaction().create(net).create(svc).create(Node(id="n1")))
    alloc = Allocator(proposer)
    await alloc._pass_until_quiet()  # of the 6 hosts, the gateway, n1's and the VIP are taken
    tx = Transaction()
    for i in range(1, 5):
        tx.create(_task_with(svc, f"t{i}", state=TaskState.NEW))
    await proposer.propose(tx)
    await alloc._pass_until_quiet()
    view = store.view()
    given = {f"t{i}": (view.get_task(f"t{i}").networks_attachments or [None])[0] for i in range(1, 5)}
    addrs = [a.addresses[0] for a in given.values() if a is not None]
    assert len(addrs) == 3 and len(set(addrs)) == 3  # the fourth waits: the network is full
    (waiting,) = [k for k, a in given.items() if a is None]
    assert alloc.tasks.waiting == {waiting: None}
    done = view.get_task("t1").clone()
    done.status = TaskStatus(state=TaskState.COMPLETE)
    await proposer.propose(Transaction().update(done))
    await alloc._pass_until_quiet()
    got = store.view().get_task(waiting).networks_attachments[0].addresses[0]
    assert got == done.networks_attachments[0].addresses[0]  # the only free one
    assert not alloc.tasks.waiting


async def test_tasks_on_a_full_network_cost_one_failed_allocation_per_pass(monkeypatch):
    """10,000 tasks publishing a port fill the /24 ingress after about 250: every later task
    scanned the whole subnet again, and one pass held the leader's loop for 6-7 s. A network
    found full is not tried again within the pass."""
    store, proposer = _store()
    net = ipam.allocate_network([], parse_network_create(
        {"Name": "tiny", "Driver": "overlay", "IPAM": {"Config": [{"Subnet": "10.6.0.0/29"}]}}), "tiny")
    svc = Service(id="s1", spec=ServiceSpec(name="web", task_template=TaskSpec(
        container_spec={"Image": "x"}, networks=[{"Target": "tiny"}])))
    tx = Transaction().create(net).create(svc).create(Node(id="n1"))
    for i in range(1, 31):
        tx.create(_task_with(svc, f"t{i}", state=TaskState.NEW))
    await proposer.propose(tx)
    alloc = Allocator(proposer)
    await alloc._pass_until_quiet()
    assert len(alloc.tasks.waiting) == 27  # 6 hosts: the gateway, n1, the VIP, 3 tasks
    tries = []
    real = ipam.AddressPool.allocate

    def counted(self):
        tries.append(self.subnet)
        return real(self)

    monkeypatch.setattr(ipam.AddressPool, "allocate", counted)
    assert not len(alloc.plan(store.view()))
    assert len(tries) == 1
