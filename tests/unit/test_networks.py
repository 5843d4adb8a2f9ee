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
    pools = alloc._pools(store.view(), {n.id: n for n in store.view().list("network")})
    freed = ipaddress.IPv4Address(t1.networks_attachments[1].addresses[0].split("/")[0])
    assert freed not in pools["netback"].used


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


async def test_a_task_version_that_needs_no_address_is_looked_at_once(monkeypatch):
    """Every pass used to ask every task whether it wants networks; a stored version never
    changes, so a version that wants none is remembered, and a new version is asked again."""
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
