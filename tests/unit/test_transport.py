"""Raft transport on loopback: delivery, isolation between peers, reconnects, dropping."""

from __future__ import annotations

import asyncio
import socket

import pytest

from swarmkit_py.raft.transport import RAFT_METHOD, Transport, parse_address
from swarmkit_py.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MsgType,
    Snapshot,
    SnapshotMeta,
)
from swarmkit_py.rpc import PeerInfo, RpcClient, RpcServer

LOOPBACK = "127.0.0.1"


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def closed_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Node:
    """A transport plus the inbox its callback fills, as the Raft driver would hold it."""

    def __init__(self, transport: Transport, inbox: list[Message]) -> None:
        self.t = transport
        self.inbox = inbox

    @property
    def addr(self) -> str:
        return f"{LOOPBACK}:{self.t.bound_port}"


@pytest.fixture
async def make_node():
    started: list[Transport] = []

    async def make(node_id: int, port: int = 0, **kwargs) -> Node:
        inbox: list[Message] = []
        t = Transport(node_id, LOOPBACK, port, inbox.append, **kwargs)
        await t.start()
        started.append(t)
        return Node(t, inbox)

    yield make
    for t in started:
        await t.stop()


def heartbeat(frm: int, to: int, seq: int) -> Message:
    return Message(MsgType.HEARTBEAT, frm, to, term=1, commit=seq)


def test_parse_address():
    assert parse_address("10.0.0.1:2377") == ("10.0.0.1", 2377)
    assert parse_address("[::1]:2377") == ("::1", 2377)
    for bad in ("nohost", ":2377", "host:", "host:port"):
        with pytest.raises(ValueError):
            parse_address(bad)


async def test_three_members_exchange_messages(make_node):
    nodes = {i: await make_node(i) for i in (1, 2, 3)}
    for i, n in nodes.items():
        for j, m in nodes.items():
            if i != j:
                n.t.add_peer(j, m.addr)
    snap = Snapshot(SnapshotMeta(9, 2, ConfState([1, 2, 3], [4])), b"state")
    for i, n in nodes.items():
        for j in nodes:
            if i != j:
                n.t.send(
                    Message(
                        MsgType.APP,
                        i,
                        j,
                        term=2,
                        log_term=2,
                        index=10 * i,
                        entries=[
                            Entry(2, 10 * i + 1, EntryType.CONF_CHANGE, b"cc"),
                            Entry(2, 10 * i + 2),
                        ],
                        commit=5,
                    )
                )
                n.t.send(Message(MsgType.SNAP, i, j, term=2, snapshot=snap, context=b"ctx"))
    await wait_until(lambda: all(len(n.inbox) == 4 for n in nodes.values()), what="4 messages each")
    for j, n in nodes.items():
        assert sorted(m.frm for m in n.inbox) == sorted([i for i in nodes if i != j] * 2)
        for m in n.inbox:
            assert m.to == j
            if m.type == MsgType.APP:
                assert m.index == 10 * m.frm
                assert m.entries == [
                    Entry(2, 10 * m.frm + 1, EntryType.CONF_CHANGE, b"cc"),
                    Entry(2, 10 * m.frm + 2),
                ]
            else:
                assert m.snapshot == snap and m.context == b"ctx"
        assert n.t.received == 4
    assert all(n.t.is_reachable(j) for i, n in nodes.items() for j in nodes if i != j)


async def test_reconnects_after_the_peer_restarts(make_node):
    a = await make_node(1)
    b = await make_node(2)
    port = b.t.bound_port
    a.t.add_peer(2, b.addr)
    a.t.send(heartbeat(1, 2, 1))
    await wait_until(lambda: len(b.inbox) == 1, what="first message")

    await b.t.stop()
    await wait_until(lambda: not a.t.is_reachable(2), what="a to notice b is gone")
    a.t.send(heartbeat(1, 2, 2))  # lost, or dropped while b is down: Raft copes

    b2 = await make_node(2, port=port)
    seq = 3
    while not b2.inbox:  # keep sending, like a leader's heartbeats, until one gets through
        a.t.send(heartbeat(1, 2, seq))
        seq += 1
        await asyncio.sleep(0.02)
        assert seq < 500, "no message reached the restarted peer within ~10s"
    assert b2.inbox[0].frm == 1
    assert a.t.is_reachable(2)
    assert a.t.stats()["peers"][2]["connect_failures"] >= 1


async def test_dead_and_stuck_peers_do_not_delay_a_live_one(make_node):
    # A peer that accepts connections but never reads: its socket buffers fill up and the
    # writer for it blocks in drain() for good.
    stuck_conns: list[asyncio.StreamWriter] = []
    stuck = await asyncio.start_server(lambda r, w: stuck_conns.append(w), LOOPBACK, 0)
    try:
        a = await make_node(1, queue_size=64)
        live = await make_node(2)
        a.t.add_peer(2, live.addr)
        a.t.add_peer(3, f"{LOOPBACK}:{closed_port()}")
        a.t.add_peer(4, f"{LOOPBACK}:{stuck.sockets[0].getsockname()[1]}")
        await wait_until(lambda: a.t.is_reachable(4), what="connection to the stuck peer")
        big = [Entry(1, i, data=b"x" * 64 * 1024) for i in range(4)]
        for seq in range(2000):
            a.t.send(Message(MsgType.APP, 1, 3, entries=big))
            a.t.send(Message(MsgType.APP, 1, 4, entries=big))
            a.t.send(heartbeat(1, 2, seq))
            if seq % 50 == 0:
                await asyncio.sleep(0)
        await wait_until(lambda: len(live.inbox) == 2000, what="all 2000 messages to the live peer")
        assert [m.commit for m in live.inbox] == list(range(2000))
        stats = a.t.stats()["peers"]
        assert stats[2]["dropped"] == 0
        assert stats[3]["dropped"] > 0 and not a.t.is_reachable(3)
        assert stats[4]["dropped"] > 0
    finally:
        for w in stuck_conns:
            w.close()
        stuck.close()
        await stuck.wait_closed()


async def test_twenty_thousand_messages_all_arrive_in_order(make_node):
    a = await make_node(1, queue_size=1 << 16)
    b = await make_node(2)
    a.t.add_peer(2, b.addr)
    n = 20_000
    for seq in range(n):
        a.t.send(heartbeat(1, 2, seq))
        if seq % 500 == 0:
            await asyncio.sleep(0)
    await wait_until(lambda: len(b.inbox) == n, timeout=60, what=f"{n} messages")
    assert [m.commit for m in b.inbox] == list(range(n))
    assert a.t.stats()["peers"][2]["sent"] == n


async def test_unknown_peer_is_dropped_and_counted(make_node):
    a = await make_node(1)
    a.t.send(heartbeat(1, 9, 0))
    a.t.send(heartbeat(1, 9, 1))
    assert a.t.dropped_unknown_peer == 2
    assert not a.t.is_reachable(9)


async def test_removed_peer_gets_nothing_more(make_node):
    a = await make_node(1)
    b = await make_node(2)
    a.t.add_peer(2, b.addr)
    a.t.send(heartbeat(1, 2, 0))
    await wait_until(lambda: len(b.inbox) == 1, what="first message")
    a.t.remove_peer(2)
    a.t.send(heartbeat(1, 2, 1))
    assert a.t.dropped_unknown_peer == 1
    assert a.t.peers() == {}


async def test_full_queue_drops_instead_of_blocking():
    # Not started, so nothing drains the queue: exactly queue_size messages fit.
    t = Transport(1, LOOPBACK, 0, lambda m: None, queue_size=10)
    t.add_peer(2, f"{LOOPBACK}:1")
    for seq in range(15):
        t.send(heartbeat(1, 2, seq))
    peer = t.stats()["peers"][2]
    assert (peer["queued"], peer["dropped"]) == (10, 5)
    await t.stop()


async def test_message_for_another_node_id_is_dropped_on_arrival(make_node):
    a = await make_node(1)
    b = await make_node(2)
    a.t.add_peer(5, b.addr)  # a believes node 5 lives where node 2 does
    a.t.add_peer(2, b.addr)
    a.t.send(heartbeat(1, 5, 0))
    a.t.send(heartbeat(1, 2, 1))
    await wait_until(
        lambda: len(b.inbox) == 1 and b.t.dropped_inbound == 1, what="one kept, one dropped"
    )
    assert b.inbox[0].commit == 1


async def test_shares_the_rpc_server_port_with_other_services():
    server = RpcServer(LOOPBACK, 0)

    async def join(peer: PeerInfo, params):
        return {"welcome": params}

    server.add_handler("node.join", join)
    inbox: list[Message] = []
    member = Transport(2, "unused", 0, inbox.append, rpc_server=server)
    sender = Transport(1, LOOPBACK, 0, lambda m: None)
    await server.start()
    await member.start()
    await sender.start()
    try:
        assert member.bound_port == server.bound_port
        sender.add_peer(2, f"{LOOPBACK}:{server.bound_port}")
        sender.send(heartbeat(1, 2, 7))
        async with RpcClient(LOOPBACK, server.bound_port) as c:
            assert await c.call("node.join", "w1") == {"welcome": "w1"}
        await wait_until(lambda: len(inbox) == 1, what="raft message on the shared port")
        assert inbox[0].commit == 7
    finally:
        await sender.stop()
        await member.stop()
        assert RAFT_METHOD not in server.handlers.notifications  # unregistered, server untouched
        assert server.bound_port
        await server.stop()


async def test_raft_over_mutual_tls(tmp_path, make_node):
    from tests.unit.test_rpc import ThrowawayCA

    ca = ThrowawayCA()
    a = await make_node(
        1,
        server_ssl=ca.server_context(tmp_path, "m1"),
        client_ssl=ca.client_context(tmp_path, "m1c"),
    )
    b = await make_node(
        2,
        server_ssl=ca.server_context(tmp_path, "m2"),
        client_ssl=ca.client_context(tmp_path, "m2c"),
    )
    a.t.add_peer(2, b.addr)
    b.t.add_peer(1, a.addr)
    a.t.send(heartbeat(1, 2, 1))
    b.t.send(heartbeat(2, 1, 2))
    await wait_until(lambda: len(a.inbox) == 1 and len(b.inbox) == 1, what="messages both ways")

    # A member whose client certificate the cluster CA did not issue gets nothing through.
    rogue = await make_node(3, client_ssl=ThrowawayCA("rogue").client_context(tmp_path, "r"))
    rogue.t.add_peer(2, b.addr)
    for seq in range(20):
        rogue.t.send(heartbeat(3, 2, seq))
        await asyncio.sleep(0.01)
    assert [m.frm for m in b.inbox] == [1]


async def test_authorize_refuses_senders_once_per_connection(make_node):
    asked: list[PeerInfo] = []

    def refuse_all(peer: PeerInfo) -> bool:
        asked.append(peer)
        return False

    a = await make_node(1)
    b = await make_node(2, authorize=refuse_all)
    a.t.add_peer(2, b.addr)
    for seq in range(10):
        a.t.send(heartbeat(1, 2, seq))
    await wait_until(lambda: b.t.dropped_unauthorized == 10, what="10 refused messages")
    assert b.inbox == [] and len(asked) == 1


async def test_snapshot_is_reported_delivered_only_when_the_follower_answers(make_node):
    """etcd's ReportSnapshot: success means the follower's transport has the snapshot, not that
    it was queued. A follower that is down, or that refuses the sender, reports failure, so
    the leader's progress leaves the snapshot state and it tries again."""
    snap = Snapshot(SnapshotMeta(9, 2, ConfState([1, 2], [])), b"s" * 200_000)
    reports: list[tuple[int, bool]] = []
    a = await make_node(1, on_snapshot_status=lambda nid, ok: reports.append((nid, ok)))
    b = await make_node(2)
    a.t.add_peer(2, b.addr)
    a.t.send(Message(MsgType.SNAP, 1, 2, term=2, snapshot=snap))
    assert reports == []  # queued is not delivered
    await wait_until(lambda: reports, what="the snapshot's status")
    assert reports == [(2, True)] and len(b.inbox) == 1 and b.inbox[0].snapshot == snap

    refusing = await make_node(3, authorize=lambda peer: False)
    a.t.add_peer(3, refusing.addr)
    a.t.send(Message(MsgType.SNAP, 1, 3, term=2, snapshot=snap))
    await wait_until(lambda: len(reports) == 2, what="the refused snapshot's status")
    assert reports[1] == (3, False) and refusing.inbox == []

    a.t.add_peer(4, f"{LOOPBACK}:{closed_port()}")
    a.t.send(Message(MsgType.SNAP, 1, 4, term=2, snapshot=snap))
    await wait_until(lambda: len(reports) == 3, what="the dead peer's snapshot status")
    assert reports[2] == (4, False)


async def test_lost_messages_report_the_peer_unreachable(make_node):
    """etcd's ReportUnreachable: messages dropped for a peer (it is down, the queue is full)
    tell the member, so a leader stops pipelining appends to it and probes instead."""
    unreachable: list[int] = []
    a = await make_node(1, queue_size=4, on_unreachable=unreachable.append, backoff_min=0.01, backoff_max=0.05)
    b = await make_node(2)
    a.t.add_peer(2, b.addr)
    a.t.send(heartbeat(1, 2, 0))
    await wait_until(lambda: b.inbox, what="first message")
    assert unreachable == []
    a.t.add_peer(3, f"{LOOPBACK}:{closed_port()}")
    a.t.send(heartbeat(1, 3, 0))
    await wait_until(lambda: 3 in unreachable, what="the dead peer reported")
    assert 2 not in unreachable
    t = Transport(5, LOOPBACK, 0, lambda m: None, queue_size=2, on_unreachable=unreachable.append)
    t.add_peer(6, f"{LOOPBACK}:1")  # not started: nothing drains its queue
    for seq in range(10):
        t.send(heartbeat(5, 6, seq))
    assert unreachable.count(6) == 1, "one report per run of overflows, not one per message"
    await t.stop()


async def test_read_path_messages_are_written_at_once_in_order(make_node):
    """A heartbeat (a read's barrier) leaves in the `send` call itself when nothing is queued
    for the peer, not at the sender task's next turn of the loop; behind queued messages it
    waits its turn, so the stream's order holds."""
    a, b = await make_node(1), await make_node(2)
    a.t.add_peer(2, b.addr)
    a.t.send(heartbeat(1, 2, 0))
    await wait_until(lambda: len(b.inbox) == 1, what="the connection")
    peer = a.t._peers[2]
    sent = peer.sent
    a.t.send(heartbeat(1, 2, 1))
    assert peer.sent == sent + 1 and not peer.queue, "the heartbeat waited for the sender task"
    a.t.send(Message(MsgType.APP, 1, 2, term=1, index=5, log_term=1, commit=2))
    a.t.send(heartbeat(1, 2, 2))
    assert [m.type for m in peer.queue] == [MsgType.APP, MsgType.HEARTBEAT]
    await wait_until(lambda: len(b.inbox) == 4, what="4 messages")
    assert [(m.type, m.commit) for m in b.inbox[1:]] == [
        (MsgType.HEARTBEAT, 1), (MsgType.APP, 2), (MsgType.HEARTBEAT, 2)]
