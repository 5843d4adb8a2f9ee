"""Dispatcher over real loopback RPC with a LocalProposer: sessions, Ready/Down, batching,
redirects and the leader-change grace. Periods are 0.1 s so a grace is 0.3 s."""

from __future__ import annotations

import asyncio
import time

import pytest

from swarmkit_py.manager.dispatcher import (
    HEARTBEAT_FAILURE,
    Dispatcher,
    StaticDirectory,
    params_identity,
)
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.proto import (
    HEARTBEAT,
    INVALID_ARGUMENT,
    LEADER_PUSH,
    NODE_NOT_FOUND,
    NOT_LEADER,
    SESSION,
    SESSION_INVALID,
    WATCH,
    leader_hint,
)
from swarmkit_py.rpc import HandlerRegistry, RpcClient, RpcError, RpcServer
from swarmkit_py.store import (
    MemoryStore,
    Node,
    NodeRole,
    NodeSpec,
    NodeState,
    NodeStatus,
    Transaction,
    new_id,
)

LOOPBACK = "127.0.0.1"
PERIOD = 0.1
GRACE = 3 * PERIOD
DESC = {
    "hostname": "worker-1",
    "platform": {"architecture": "x86_64", "os": "linux"},
    "resources": {"nano_cpus": 2_000_000_000, "memory_bytes": 4 * 2**30},
    "engine": {"engine_version": "26.1.5", "labels": {"zone": "a"}},
}


class CountingProposer(LocalProposer):
    """Records every proposal (its op count); an optional delay stands in for Raft latency."""

    def __init__(self, store: MemoryStore | None = None, delay: float = 0.0):
        super().__init__(store)
        self.sizes: list[int] = []
        self.delay = delay

    async def propose(self, tx: Transaction, timeout: float | None = None):
        self.sizes.append(len(tx))
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().propose(tx, timeout)


async def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> float:
    """Poll until true; returns the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic()


async def add_node(proposer, state: NodeState = NodeState.UNKNOWN) -> str:
    node = Node(
        id=new_id(),
        spec=NodeSpec(role=NodeRole.WORKER),
        role=NodeRole.WORKER,
        status=NodeStatus(state=state),
    )
    await proposer.propose(Transaction().create(node))
    return node.id


def state_of(proposer, node_id: str) -> NodeState:
    return proposer.store.view().get_node(node_id).status.state


class Manager:
    """One RpcServer + Dispatcher sharing the test's store, as a manager shares the Raft one."""

    def __init__(self, proposer, directory: StaticDirectory | None = None):
        self.server = RpcServer(LOOPBACK, 0)
        self.directory = directory or StaticDirectory()
        self.dispatcher = Dispatcher(
            proposer,
            heartbeat_period=PERIOD,
            grace_multiplier=3,
            identify=params_identity,
            directory=self.directory,
        )
        self.dispatcher.register(self.server)

    @property
    def addr(self) -> str:
        return f"{LOOPBACK}:{self.server.bound_port}"

    async def up(self, lead: bool = True) -> Manager:
        await self.server.start()
        if lead:
            self.dispatcher.start()
        return self

    async def down(self) -> None:
        await self.dispatcher.stop()
        await self.server.stop()


@pytest.fixture
async def proposer():
    return CountingProposer()


@pytest.fixture
async def manager(proposer):
    m = await Manager(proposer).up()
    m.directory.leader = m.addr
    m.directory.manager_list = [{"node_id": "m1", "addr": m.addr}]
    yield m
    await m.down()


async def open_session(client: RpcClient, node_id: str, **extra):
    return await client.call(SESSION, {"node_id": node_id, "description": DESC, **extra})


async def test_session_marks_node_ready_with_description_and_addr(proposer, manager):
    node_id = await add_node(proposer)
    async with RpcClient(LOOPBACK, manager.server.bound_port, timeout=5) as client:
        answer = await open_session(client, node_id)
        assert answer["node_id"] == node_id
        assert answer["heartbeat_period"] == PERIOD
        assert answer["managers"] == [{"node_id": "m1", "addr": manager.addr}]
        node = proposer.store.view().get_node(node_id)
        assert node.status.state == NodeState.READY
        assert node.status.addr == LOOPBACK  # the connection's source IP when none advertised
        assert node.description.hostname == "worker-1"
        assert node.description.resources.nano_cpus == 2_000_000_000
        assert node.description.engine.labels == {"zone": "a"}
        hb = await client.call(HEARTBEAT, {"session_id": answer["session_id"]})
        assert hb["heartbeat_period"] == PERIOD
        assert manager.dispatcher.node_ready_count() == 1
        assert manager.dispatcher.session_count() == 1


async def test_advertised_addr_wins_over_source_ip(proposer, manager):
    node_id = await add_node(proposer)
    async with RpcClient(LOOPBACK, manager.server.bound_port, timeout=5) as client:
        await open_session(client, node_id, addr="10.9.8.7")
    assert proposer.store.view().get_node(node_id).status.addr == "10.9.8.7"


async def test_silent_node_goes_down_within_grace_and_comes_back(proposer, manager):
    node_id = await add_node(proposer)
    client = RpcClient(LOOPBACK, manager.server.bound_port, timeout=5)
    answer = await open_session(client, node_id)
    for _ in range(5):  # a live node stays Ready past the grace period
        await asyncio.sleep(PERIOD)
        await client.call(HEARTBEAT, {"session_id": answer["session_id"]})
    assert state_of(proposer, node_id) == NodeState.READY
    last_beat = time.monotonic()
    down_at = await wait_until(
        lambda: state_of(proposer, node_id) == NodeState.DOWN, what="node down"
    )
    silent_for = down_at - last_beat
    assert GRACE * 0.9 <= silent_for <= GRACE + 0.25, silent_for
    node = proposer.store.view().get_node(node_id)
    assert node.status.message == HEARTBEAT_FAILURE
    assert node.description.hostname == "worker-1"  # Down keeps what the node reported
    with pytest.raises(RpcError) as err:  # the expired session is gone: re-open it
        await client.call(HEARTBEAT, {"session_id": answer["session_id"]})
    assert err.value.code == SESSION_INVALID
    await open_session(client, node_id)
    node = proposer.store.view().get_node(node_id)
    assert node.status.state == NodeState.READY and node.status.message is None
    assert manager.dispatcher.metrics()["nodes_declared_down"] == 1
    await client.close()


async def test_heartbeats_cause_no_writes(proposer, manager):
    node_id = await add_node(proposer)
    async with RpcClient(LOOPBACK, manager.server.bound_port, timeout=5) as client:
        answer = await open_session(client, node_id)
        writes = len(proposer.sizes)
        for _ in range(20):
            await client.call(HEARTBEAT, {"session_id": answer["session_id"]})
        # Re-opening with nothing changed (what every worker does after an election) is free too.
        await open_session(client, node_id)
        assert len(proposer.sizes) == writes
        assert manager.dispatcher.metrics()["heartbeats"] == 20


async def test_session_errors_are_typed(proposer, manager):
    node_id = await add_node(proposer)
    async with RpcClient(LOOPBACK, manager.server.bound_port, timeout=5) as client:
        with pytest.raises(RpcError) as err:
            await client.call(SESSION, {"node_id": new_id()})
        assert err.value.code == NODE_NOT_FOUND
        with pytest.raises(RpcError) as err:
            await client.call(SESSION, {"node_id": node_id, "description": {"resources": "lots"}})
        assert err.value.code == INVALID_ARGUMENT
        with pytest.raises(RpcError) as err:
            await client.call(HEARTBEAT, {"session_id": "nope"})
        assert err.value.code == SESSION_INVALID
        with pytest.raises(RpcError) as err:
            await client.call(HEARTBEAT, [])
        assert err.value.code == INVALID_ARGUMENT
        answer = await open_session(client, node_id)
    async with RpcClient(LOOPBACK, manager.server.bound_port, timeout=5) as other:
        # A session is bound to its connection: a guessed id from elsewhere is refused.
        with pytest.raises(RpcError) as err:
            await other.call(HEARTBEAT, {"session_id": answer["session_id"]})
        assert err.value.code == SESSION_INVALID
    assert len(proposer.sizes) == 2  # the node's creation and its one Ready write


async def test_non_leader_redirects_to_the_leader(proposer, manager):
    follower = await Manager(proposer, StaticDirectory(leader=manager.addr)).up(lead=False)
    node_id = await add_node(proposer)
    try:
        async with RpcClient(LOOPBACK, follower.server.bound_port, timeout=5) as client:
            for method, params in (
                (SESSION, {"node_id": node_id}),
                (HEARTBEAT, {"session_id": "x"}),
            ):
                with pytest.raises(RpcError) as err:
                    await client.call(method, params)
                assert err.value.code == NOT_LEADER
                assert leader_hint(err.value.message) == manager.addr
        assert state_of(proposer, node_id) == NodeState.UNKNOWN
    finally:
        await follower.down()


async def test_many_expiries_are_one_transaction(proposer, manager):
    await manager.dispatcher.stop()
    ids = [await add_node(proposer, NodeState.READY) for _ in range(25)]
    await add_node(proposer, NodeState.DOWN)  # already down: not tracked, not rewritten
    before = len(proposer.sizes)
    manager.dispatcher.start()
    await wait_until(
        lambda: all(state_of(proposer, n) == NodeState.DOWN for n in ids), what="all down"
    )
    # after an election: all Unknown in one entry, then all Down in one entry
    assert proposer.sizes[before:] == [25, 25]
    assert manager.dispatcher.node_down_count() == 26


async def test_concurrent_session_opens_share_transactions():
    proposer = CountingProposer(delay=0.02)  # a Raft round trip, during which opens pile up
    m = await Manager(proposer).up()
    ids = [await add_node(proposer) for _ in range(30)]
    clients = [RpcClient(LOOPBACK, m.server.bound_port, timeout=5) for _ in ids]
    try:
        for c in clients:
            await c.connect()
        before = len(proposer.sizes)
        await asyncio.gather(*(open_session(c, n) for c, n in zip(clients, ids, strict=True)))
        batches = proposer.sizes[before:]
        assert sum(batches) == 30
        assert len(batches) <= 3, batches
        assert m.dispatcher.node_ready_count() == 30
    finally:
        for c in clients:
            await c.close()
        await m.down()


def _states(watcher) -> list[tuple[str, NodeState]]:
    return [(e.new.id, e.new.status.state) for e in watcher.drain() if e.new is not None]


async def test_after_an_election_a_silent_worker_is_unknown_then_down(proposer, manager):
    """A worker Ready in the store that never talks to the new leader is shown Unknown one
    grace after the new leader started and Down after the reconnect grace (2 x), while a
    worker that reconnects and keeps heartbeating is never anything but Ready."""
    live = await add_node(proposer)
    dead = await add_node(proposer)
    c_live = RpcClient(LOOPBACK, manager.server.bound_port, timeout=5)
    c_dead = RpcClient(LOOPBACK, manager.server.bound_port, timeout=5)
    await open_session(c_live, live)
    await open_session(c_dead, dead)
    await c_dead.close()  # crashed together with the old leader
    await manager.dispatcher.stop()  # old leader deposed before the dead node expired
    assert state_of(proposer, dead) == NodeState.READY

    watcher = proposer.store.watch("node")
    new = await Manager(proposer).up(lead=False)
    try:
        await asyncio.sleep(2 * GRACE)  # an election long compared with the grace
        started = time.monotonic()
        new.dispatcher.start()
        await asyncio.sleep(GRACE / 2)  # the live worker reconnects late, but within a grace
        answer = await open_session(
            c_live := RpcClient(LOOPBACK, new.server.bound_port, timeout=5), live
        )
        beating = True

        async def beat():
            while beating:
                await c_live.call(HEARTBEAT, {"session_id": answer["session_id"]})
                await asyncio.sleep(PERIOD)

        beater = asyncio.create_task(beat())
        unknown_at = await wait_until(lambda: state_of(proposer, dead) == NodeState.UNKNOWN)
        assert GRACE * 0.9 <= unknown_at - started <= GRACE + 0.25, unknown_at - started
        down_at = await wait_until(lambda: state_of(proposer, dead) == NodeState.DOWN)
        assert 2 * GRACE * 0.9 <= down_at - started <= 2 * GRACE + 0.25, down_at - started
        await asyncio.sleep(3 * GRACE)
        beating = False
        await beater
        assert _states(watcher) == [(dead, NodeState.UNKNOWN), (dead, NodeState.DOWN)]
        assert state_of(proposer, live) == NodeState.READY
        m = new.dispatcher.metrics()
        assert m["nodes_declared_unknown"] == 1 and m["nodes_declared_down"] == 1
    finally:
        watcher.close()
        await c_live.close()
        await new.down()


async def test_the_reconnect_window_stays_open_while_nodes_keep_arriving(proposer, manager, monkeypatch):
    """After an election the nodes in doubt reconnect one after another, slower than the
    reconnect grace allows for all of them (a new leader accepting a thousand sessions): none
    of the live ones is declared Down, and the one that died with the old leader is Down one
    grace after the last live one came back (issue 13)."""
    from swarmkit_py.manager.dispatcher import dispatcher as dispatcher_mod

    monkeypatch.setattr(dispatcher_mod, "MIN_RECONNECT_RATE", 2.0)  # the cap: well after the test
    live = [await add_node(proposer) for _ in range(6)]
    dead = await add_node(proposer)
    for node_id in [*live, dead]:
        c = RpcClient(LOOPBACK, manager.server.bound_port, timeout=5)
        await open_session(c, node_id)
        await c.close()
    await manager.dispatcher.stop()
    watcher = proposer.store.watch("node")
    new = await Manager(proposer).up(lead=False)
    clients: list[RpcClient] = []
    sessions: list[str] = []
    beating = True

    async def beat():
        while beating:
            for c, sid in list(zip(clients, sessions, strict=True)):
                await c.call(HEARTBEAT, {"session_id": sid})
            await asyncio.sleep(PERIOD)

    beater = asyncio.create_task(beat())
    try:
        new.dispatcher.start()
        started = time.monotonic()
        for node_id in live:  # one every 2/3 grace: the last long after the reconnect grace
            await asyncio.sleep(GRACE * 2 / 3)
            c = RpcClient(LOOPBACK, new.server.bound_port, timeout=5)
            answer = await open_session(c, node_id)
            clients.append(c)
            sessions.append(answer["session_id"])
        last_back = time.monotonic()
        assert last_back - started > new.dispatcher.reconnect_grace
        down_at = await wait_until(lambda: state_of(proposer, dead) == NodeState.DOWN, timeout=10)
        assert down_at - last_back >= GRACE * 0.9, down_at - last_back
        assert down_at - last_back <= GRACE + 1.0, down_at - last_back
        assert [s for n, s in _states(watcher) if n != dead and s == NodeState.DOWN] == []
        assert all(state_of(proposer, n) == NodeState.READY for n in live)
    finally:
        beating = False
        await beater
        watcher.close()
        for c in clients:
            await c.close()
        await new.down()


async def test_a_silent_node_is_kept_while_handshakes_queue_at_the_port(proposer):
    """Rule 5: a worker whose timer expires while connections wait for a TLS handshake may be
    one of them (its session re-opening behind a slow leader): it stays Ready one period at a
    time while the queue is not empty, at most a reconnect grace past its deadline; once the
    queue is empty the silence is its own and it is Down."""
    backlog = [1]
    m = Manager.__new__(Manager)
    m.server, m.directory = RpcServer(LOOPBACK, 0), StaticDirectory()
    m.dispatcher = Dispatcher(proposer, heartbeat_period=PERIOD, grace_multiplier=3,
                              identify=params_identity, directory=m.directory,
                              backlog=lambda: backlog[0])
    m.dispatcher.register(m.server)
    await m.up()
    m.directory.leader = m.addr
    try:
        node_id = await add_node(proposer)
        client = RpcClient(LOOPBACK, m.server.bound_port, timeout=5)
        await open_session(client, node_id)
        await client.close()
        silent_from = time.monotonic()
        await asyncio.sleep(GRACE + 3 * PERIOD)  # past its grace: kept by the queue
        assert state_of(proposer, node_id) == NodeState.READY
        assert m.dispatcher.counters["kept_ready_by_backlog"] >= 1
        down_at = await wait_until(lambda: state_of(proposer, node_id) == NodeState.DOWN)
        # the cap: a reconnect grace past its deadline, even with handshakes still queued
        assert down_at - silent_from <= GRACE + m.dispatcher.reconnect_grace + 0.5
        assert down_at - silent_from >= GRACE + m.dispatcher.reconnect_grace * 0.9

        other = await add_node(proposer)
        client = RpcClient(LOOPBACK, m.server.bound_port, timeout=5)
        await open_session(client, other)
        await client.close()
        backlog[0] = 0  # nobody queued: judged on its own silence
        silent_from = time.monotonic()
        down_at = await wait_until(lambda: state_of(proposer, other) == NodeState.DOWN)
        assert down_at - silent_from <= GRACE + 0.5
    finally:
        await m.down()


async def test_a_mass_silence_is_not_declared_down_at_once(proposer, manager, monkeypatch):
    """Rule 6: when many of the nodes fall silent together (the leader is behind on reading
    them), they are kept past their deadline; once most of them speak again, the few still
    silent are silent on their own and Down. One node falling silent alone is Down at its grace
    as before."""
    from swarmkit_py.manager.dispatcher import dispatcher as dispatcher_mod

    monkeypatch.setattr(dispatcher_mod, "MASS_SILENCE_MIN", 3)
    nodes = [await add_node(proposer) for _ in range(8)]
    clients, sessions = [], []
    for node_id in nodes:
        c = RpcClient(LOOPBACK, manager.server.bound_port, timeout=5)
        sessions.append((await open_session(c, node_id))["session_id"])
        clients.append(c)
    d = manager.dispatcher
    try:
        # one silent node: Down at its grace
        await clients[0].close()
        silent_from = time.monotonic()
        beaters = list(zip(clients[1:], sessions[1:], strict=True))
        while state_of(proposer, nodes[0]) != NodeState.DOWN:
            for c, sid in beaters:
                await c.call(HEARTBEAT, {"session_id": sid})
            await asyncio.sleep(PERIOD)
            assert time.monotonic() - silent_from < GRACE + 1.0, "one silent node not Down in time"
        # five of the seven others fall silent at once: kept; two of them speak again
        silent_from = time.monotonic()
        late, gone, steady = beaters[:2], beaters[2:5], beaters[5:]
        speaking = list(steady)
        beating = True

        async def beat():
            while beating:
                for c, sid in list(speaking):
                    await c.call(HEARTBEAT, {"session_id": sid})
                await asyncio.sleep(PERIOD)

        beater = asyncio.create_task(beat())
        await asyncio.sleep(GRACE + 2 * PERIOD)
        assert all(state_of(proposer, n) == NodeState.READY for n in nodes[1:])
        assert d.counters["kept_ready_by_mass_silence"] >= 1
        speaking.extend(late)
        resumed = time.monotonic()
        down_at = await wait_until(lambda: all(state_of(proposer, n) == NodeState.DOWN for n in nodes[3:6]))
        assert down_at - silent_from <= GRACE + d.reconnect_grace + 0.5
        assert down_at - resumed <= 3 * PERIOD + 0.5  # no longer a mass: judged at once
        assert all(state_of(proposer, n) == NodeState.READY for n in nodes[1:3] + nodes[6:])
        beating = False
        await beater
        assert len(gone) == 3
    finally:
        for c in clients:
            await c.close()


async def _new_leader_after(proposer, manager, last_raft_word: float):
    """Two Ready managers (the old leader's host, a follower) last heard by Raft at
    `last_raft_word`; the current dispatcher stopped and a new manager ready to lead (not
    started): (old_leader, follower, its directory, the new manager)."""
    old_leader = await add_node(proposer, NodeState.READY)
    follower = await add_node(proposer, NodeState.READY)
    await manager.dispatcher.stop()
    directory = StaticDirectory()
    directory.contact = {old_leader: last_raft_word, follower: last_raft_word}
    return old_leader, follower, directory, await Manager(proposer, directory).up(lead=False)


async def test_managers_are_judged_by_raft_contact(proposer, manager):
    """After an election: the old leader's host is Down one grace after Raft last heard from
    it (earlier than one grace after the election), and a manager whose worker session has not
    moved yet but whose Raft member keeps talking is never touched."""
    crashed_at = time.monotonic()
    old_leader, follower, directory, new = await _new_leader_after(proposer, manager, crashed_at)
    watcher = proposer.store.watch("node")

    async def raft_traffic():
        while True:
            directory.contact[follower] = time.monotonic()
            await asyncio.sleep(PERIOD / 2)

    raft = asyncio.create_task(raft_traffic())
    try:
        await asyncio.sleep(GRACE / 2)  # the election
        started = time.monotonic()
        new.dispatcher.start()
        down_at = await wait_until(lambda: state_of(proposer, old_leader) == NodeState.DOWN)
        assert GRACE * 0.9 <= down_at - crashed_at <= GRACE + 0.25, down_at - crashed_at
        assert down_at - started < GRACE * 0.9  # the election's time is not added
        await asyncio.sleep(3 * GRACE)
        assert _states(watcher) == [(old_leader, NodeState.DOWN)]  # never Unknown first
        assert state_of(proposer, follower) == NodeState.READY
        assert new.dispatcher.metrics()["kept_ready_by_raft"] >= 1
        # Raft goes silent too (the follower's host lost power): its heartbeat clock expired
        # long ago (it never opened a session here), so it is Down once Raft has been silent
        # for a period (ten Raft heartbeats)
        raft.cancel()
        silent_at = directory.contact[follower]
        down_at = await wait_until(lambda: state_of(proposer, follower) == NodeState.DOWN)
        assert PERIOD * 0.9 <= down_at - silent_at <= PERIOD + 0.25, down_at - silent_at
    finally:
        raft.cancel()
        watcher.close()
        await new.down()


async def test_watch_pushes_leader_changes_from_any_manager(proposer, manager):
    """A non-leading manager answers dispatcher.watch with the leader it knows and pushes
    dispatcher.leader to the watching connection when Raft names another leader."""
    follower = await Manager(proposer).up(lead=False)
    follower.directory.leader = manager.addr
    follower.dispatcher.leader_changed(4)
    got: asyncio.Queue = asyncio.Queue()
    registry = HandlerRegistry()
    registry.add_notification_handler(LEADER_PUSH, lambda peer, params: got.put_nowait(params))
    client = RpcClient(LOOPBACK, follower.server.bound_port, timeout=5, handlers=registry)
    try:
        node_id = await add_node(proposer)
        answer = await client.call(WATCH, {"node_id": node_id})
        assert answer == {"leader_addr": manager.addr, "term": 4, "spread_s": 0.0}
        follower.directory.set_leader("10.0.0.9:2377", 5)
        params = await asyncio.wait_for(got.get(), 2)
        assert params == {"leader_addr": "10.0.0.9:2377", "term": 5, "spread_s": 0.0}
        assert follower.dispatcher.metrics()["leader_pushes"] == 1
        follower.directory.set_leader("10.0.0.9:2377", 5)  # no change: no push
        await asyncio.sleep(0.1)
        assert got.empty()
    finally:
        await client.close()
        await follower.down()


async def test_node_removed_loses_its_session(proposer, manager):
    node_id = await add_node(proposer)
    async with RpcClient(LOOPBACK, manager.server.bound_port, timeout=5) as client:
        answer = await open_session(client, node_id)
        await proposer.propose(Transaction().delete("node", node_id))
        await wait_until(lambda: not manager.dispatcher.has_session(node_id))
        with pytest.raises(RpcError) as err:
            await client.call(HEARTBEAT, {"session_id": answer["session_id"]})
        assert err.value.code == SESSION_INVALID
        with pytest.raises(RpcError) as err:
            await open_session(client, node_id)
        assert err.value.code == NODE_NOT_FOUND


async def test_stop_turns_sessions_into_not_leader(proposer, manager):
    node_id = await add_node(proposer)
    async with RpcClient(LOOPBACK, manager.server.bound_port, timeout=5) as client:
        answer = await open_session(client, node_id)
        writes = manager.dispatcher.metrics()["status_transactions"]
        assert writes == 1
        await manager.dispatcher.stop()
        assert manager.dispatcher.metrics()["status_transactions"] == writes  # kept across terms
        manager.directory.leader = "10.0.0.9:2377"
        with pytest.raises(RpcError) as err:
            await client.call(HEARTBEAT, {"session_id": answer["session_id"]})
        assert err.value.code == NOT_LEADER
        assert leader_hint(err.value.message) == "10.0.0.9:2377"
        assert manager.dispatcher.metrics()["leader"] is False
        await asyncio.sleep(2 * GRACE)  # a stopped dispatcher writes nothing
        assert state_of(proposer, node_id) == NodeState.READY


async def test_push_reaches_the_session_connection_after_the_answer(proposer, manager):
    node_id = await add_node(proposer)
    received: list = []
    order: list[str] = []

    async def on_session(nid: str):
        await manager.dispatcher.push(nid, "test.assignments", {"full": True})

    manager.dispatcher.add_session_listener(on_session)
    client = RpcClient(LOOPBACK, manager.server.bound_port, timeout=5)

    def on_push(peer, params):
        order.append("push")
        received.append(params)

    client.handlers.add_notification_handler("test.assignments", on_push)
    try:
        await open_session(client, node_id)
        order.append("answer")
        await wait_until(lambda: len(received) == 1, what="push after session open")
        assert await manager.dispatcher.push(node_id, "test.assignments", {"n": 2})
        await wait_until(lambda: len(received) == 2, what="direct push")
        assert received == [{"full": True}, {"n": 2}]
        assert order[0] == "answer"
        assert not await manager.dispatcher.push(new_id(), "test.assignments", {})
    finally:
        await client.close()
    await wait_until(lambda: not manager.dispatcher.has_session(node_id))
    assert not await manager.dispatcher.push(node_id, "test.assignments", {})


async def test_a_stalled_leader_does_not_declare_live_nodes_down(proposer, manager):
    """The leader's own process did not run for two graces (a huge transaction, a starved
    CPU): the silence is its own, not the worker's, so the node stays Ready."""
    node_id = await add_node(proposer)
    client = RpcClient(LOOPBACK, manager.server.bound_port, timeout=5)
    answer = await open_session(client, node_id)
    await client.call(HEARTBEAT, {"session_id": answer["session_id"]})
    time.sleep(2 * GRACE)  # blocks the event loop: nobody runs, the dispatcher included
    for _ in range(5):
        await client.call(HEARTBEAT, {"session_id": answer["session_id"]})
        await asyncio.sleep(PERIOD)
    assert state_of(proposer, node_id) == NodeState.READY
    assert manager.dispatcher.counters["stalls_forgiven"] >= 1
    assert manager.dispatcher.metrics()["nodes_declared_down"] == 0
    await client.close()


async def test_the_heartbeat_period_grows_with_the_cluster_to_cap_the_leader_load(proposer):
    """At most `max_heartbeat_rate` beats a second: past rate x period nodes the period the
    workers are told grows (half-second steps), and the grace (down detection) with it."""
    d = Dispatcher(proposer, heartbeat_period=PERIOD, max_heartbeat_rate=20,
                   identify=params_identity, directory=StaticDirectory())
    assert d.heartbeat_period == PERIOD  # 0 nodes
    for i in range(2):
        d._tracker.set(f"n{i}", 100.0)
    assert d.heartbeat_period == PERIOD  # 2 nodes x 10/s = 20/s: within the budget
    for i in range(2, 30):
        d._tracker.set(f"n{i}", 100.0)
    assert d.heartbeat_period == 1.5  # 30 nodes at 20/s: 1.5 s
    assert d.grace == 4.5
    assert Dispatcher(proposer, heartbeat_period=PERIOD, max_heartbeat_rate=None,
                      identify=params_identity).heartbeat_period == PERIOD
    with pytest.raises(ValueError):
        Dispatcher(proposer, max_heartbeat_rate=0)


class _Unanswered:
    """The session's connection as the kernel sees it after the worker's host lost power: data
    in flight, retransmitted, no ACK since long before any probe."""

    def __init__(self, conn):
        self.conn = conn

    def __call__(self):
        from swarmkit_py.rpc.tcpinfo import TCP_ESTABLISHED, TcpInfo

        return TcpInfo(state=TCP_ESTABLISHED, retransmits=2, unacked=1, rto_s=0.2,
                       last_ack_recv_s=60.0, last_data_sent_s=0.0)


async def _kernel_manager(proposer, grace_multiplier: float) -> Manager:
    m = Manager(proposer)
    m.dispatcher = Dispatcher(proposer, heartbeat_period=PERIOD, grace_multiplier=grace_multiplier,
                              suspect_multiplier=1.25, probe_wait=PERIOD / 2,
                              identify=params_identity, directory=m.directory)
    m.server = RpcServer(LOOPBACK, 0)
    m.dispatcher.register(m.server)
    return await m.up()


async def test_a_host_that_acknowledges_nothing_is_down_before_the_grace_ends(proposer):
    """Kernel evidence (issue 10): a late node whose session's TCP segments go unacknowledged
    after a probe (a power-cut host) is Down after about 1.25 periods + probe_wait, not after
    the grace (here 10 periods, 1 s)."""
    m = await _kernel_manager(proposer, grace_multiplier=10)
    try:
        node_id = await add_node(proposer)
        async with RpcClient(LOOPBACK, m.server.bound_port, timeout=5) as client:
            await open_session(client, node_id)
            session = m.dispatcher._sessions.for_node(node_id)
            session.connection.tcp_info = _Unanswered(session.connection)
            last_beat = time.monotonic()
            down_at = await wait_until(lambda: state_of(proposer, node_id) == NodeState.DOWN,
                                       what="node down")
        assert down_at - last_beat < 10 * PERIOD * 0.9, down_at - last_beat
        assert down_at - last_beat >= 1.25 * PERIOD + PERIOD / 2 - 0.02  # probed, then waited
        metrics = m.dispatcher.metrics()
        assert metrics["probes_sent"] == 1 and metrics["nodes_down_by_kernel_evidence"] == 1
        assert proposer.store.view().get_node(node_id).status.message == HEARTBEAT_FAILURE
    finally:
        await m.down()


async def test_a_late_node_whose_kernel_answers_keeps_its_whole_grace(proposer):
    """The same silence on a connection whose peer's kernel acknowledges the probe (a live
    process that is only slow: here a real loopback client that stopped beating): probed, and
    left to the heartbeat clock, Down only once the whole grace has passed."""
    m = await _kernel_manager(proposer, grace_multiplier=3)
    try:
        node_id = await add_node(proposer)
        async with RpcClient(LOOPBACK, m.server.bound_port, timeout=5) as client:
            await open_session(client, node_id)
            last_beat = time.monotonic()
            down_at = await wait_until(lambda: state_of(proposer, node_id) == NodeState.DOWN,
                                       what="node down")
        assert down_at - last_beat >= GRACE * 0.9, down_at - last_beat
        metrics = m.dispatcher.metrics()
        assert metrics["probes_sent"] >= 1 and metrics["nodes_down_by_kernel_evidence"] == 0
    finally:
        await m.down()


async def test_after_an_election_a_manager_whose_host_is_silent_is_down_at_once(proposer, manager):
    """Kernel evidence on the Raft connections (issue 10): the old leader's host, which Raft
    heard from only just before the election, is Down at the new leader's first sweep when
    its host has stopped acknowledging TCP, instead of one grace after its last Raft word;
    a manager whose Raft member keeps talking and whose host answers is untouched."""
    old_leader, follower, directory, new = await _new_leader_after(proposer, manager, time.monotonic())
    directory.silent = {old_leader}
    try:
        started = time.monotonic()
        new.dispatcher.start()
        down_at = await wait_until(lambda: state_of(proposer, old_leader) == NodeState.DOWN)
        assert down_at - started < GRACE * 0.9, down_at - started
        directory.contact[follower] = time.monotonic()
        await asyncio.sleep(PERIOD / 2)
        assert state_of(proposer, follower) == NodeState.READY
    finally:
        await new.down()


async def test_after_an_election_a_manager_host_found_silent_later_is_down_then(proposer, manager):
    """The new leader's Raft connection to the old leader's host may show the silence only a
    retransmission timeout after the election (this member's first appends to it): a manager
    Raft has not heard from for probe_wait is looked at again every probe_wait / 2, and Down
    as soon as its host is silent, long before a grace (here 2 s) after its last Raft word."""
    old_leader, follower, directory, new = await _new_leader_after(proposer, manager, time.monotonic())
    await new.down()
    new = Manager(proposer, directory)
    new.dispatcher = Dispatcher(proposer, heartbeat_period=PERIOD, grace_multiplier=20,
                                probe_wait=PERIOD / 2, identify=params_identity, directory=directory)
    new.server = RpcServer(LOOPBACK, 0)
    new.dispatcher.register(new.server)
    await new.up(lead=False)
    try:
        await asyncio.sleep(PERIOD)  # Raft has not heard the old leader for probe_wait
        started = time.monotonic()
        new.dispatcher.start()
        await asyncio.sleep(3 * PERIOD)
        assert state_of(proposer, old_leader) == NodeState.READY
        directory.contact[follower] = time.monotonic()
        directory.silent = {old_leader}
        down_at = await wait_until(lambda: state_of(proposer, old_leader) == NodeState.DOWN)
        assert down_at - started < 20 * PERIOD * 0.9, down_at - started
        assert state_of(proposer, follower) == NodeState.READY
        assert new.dispatcher.counters["nodes_down_by_kernel_evidence"] == 1
    finally:
        await new.down()
