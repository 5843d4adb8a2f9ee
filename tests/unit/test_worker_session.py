"""WorkerSession against real dispatchers on loopback: open, beat, fail over, follow hints,
receive pushes. Periods are 0.1 s (grace 0.3 s)."""

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
from swarmkit_py.rpc import RpcServer
from swarmkit_py.store import Node, NodeRole, NodeState, NodeStatus, Transaction, new_id
from swarmkit_py.worker.session import WorkerSession

LOOPBACK = "127.0.0.1"
PERIOD = 0.1
GRACE = 3 * PERIOD


def describe():
    return {"hostname": "w1", "resources": {"nano_cpus": 10**9, "memory_bytes": 2**30}}


async def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic()


class Manager:
    def __init__(self, proposer, directory: StaticDirectory):
        self.server = RpcServer(LOOPBACK, 0)
        self.directory = directory
        self.dispatcher = Dispatcher(
            proposer, heartbeat_period=PERIOD, identify=params_identity, directory=directory
        )
        self.dispatcher.register(self.server)

    @property
    def addr(self) -> str:
        return f"{LOOPBACK}:{self.server.bound_port}"


@pytest.fixture
async def cluster():
    """Two managers over one store (as Raft would replicate it); the first one leads."""
    proposer = LocalProposer()
    directory = StaticDirectory()
    managers = [Manager(proposer, directory) for _ in range(2)]
    for m in managers:
        await m.server.start()
    directory.manager_list = [{"node_id": f"m{i}", "addr": m.addr} for i, m in enumerate(managers)]
    directory.leader = managers[0].addr
    managers[0].dispatcher.start()
    yield proposer, directory, managers
    for m in managers:
        await m.dispatcher.stop()
        await m.server.stop()  # idempotent: a test may have stopped it already


async def add_node(proposer) -> str:
    node = Node(id=new_id(), role=NodeRole.WORKER, status=NodeStatus(state=NodeState.UNKNOWN))
    await proposer.propose(Transaction().create(node))
    return node.id


def state_of(proposer, node_id):
    return proposer.store.view().get_node(node_id).status.state


def worker(node_id, managers, **kw) -> WorkerSession:
    kw.setdefault("describe", describe)
    kw.setdefault("min_heartbeat_timeout", 0.3)
    return WorkerSession(node_id, managers, **kw)


async def test_session_keeps_node_ready_and_learns_managers(cluster):
    proposer, directory, (leader, follower) = cluster
    node_id = await add_node(proposer)
    async with worker(node_id, [leader.addr]) as w:
        await w.wait_connected(5)
        assert state_of(proposer, node_id) == NodeState.READY
        node = proposer.store.view().get_node(node_id)
        assert node.description.hostname == "w1"
        assert w.heartbeat_period == PERIOD
        assert set(w.managers) == {leader.addr, follower.addr}
        await wait_until(lambda: w.stats["heartbeats"] >= 8, what="heartbeats")
        assert state_of(proposer, node_id) == NodeState.READY  # beats outlast the grace
        assert w.stats["sessions_opened"] == 1
    # A stopped worker is Down after the grace (the timing is checked in test_dispatcher).
    await wait_until(lambda: state_of(proposer, node_id) == NodeState.DOWN, what="node down")
    assert proposer.store.view().get_node(node_id).status.message == HEARTBEAT_FAILURE


async def test_worker_follows_not_leader_hint(cluster):
    proposer, directory, (leader, follower) = cluster
    node_id = await add_node(proposer)
    async with worker(node_id, [follower.addr]) as w:  # seeded with the follower only
        await w.wait_connected(5)
        assert w.manager_addr == leader.addr
        assert leader.dispatcher.has_session(node_id)
        assert state_of(proposer, node_id) == NodeState.READY


async def test_worker_survives_leader_change_without_being_marked_down(cluster):
    proposer, directory, (old, new) = cluster
    node_id = await add_node(proposer)
    downs = proposer.store.watch(
        "node", filter=lambda e: e.new is not None and e.new.status.state == NodeState.DOWN
    )
    async with worker(node_id, [old.addr]) as w:
        await w.wait_connected(5)
        # The old leader is deposed; the election takes a while; the new one starts.
        await old.dispatcher.stop()
        directory.leader = None
        await asyncio.sleep(PERIOD)
        directory.leader = new.addr
        new.dispatcher.start()
        # both sides: the leader registers the session before the worker reads the answer
        await wait_until(lambda: new.dispatcher.has_session(node_id) and w.manager_addr == new.addr,
                         what="session on new leader")
        await asyncio.sleep(3 * GRACE)
        assert state_of(proposer, node_id) == NodeState.READY
        assert downs.drain() == []
    downs.close()


async def test_worker_fails_over_when_the_leader_process_dies(cluster):
    proposer, directory, (old, new) = cluster
    node_id = await add_node(proposer)
    old_addr = old.addr
    async with worker(node_id, [old.addr, new.addr]) as w:
        await w.wait_connected(5)
        await old.server.stop()  # connections reset: the worker notices at once
        await old.dispatcher.stop()
        directory.leader = new.addr
        new.dispatcher.start()
        await wait_until(lambda: new.dispatcher.has_session(node_id), what="failover")
        assert state_of(proposer, node_id) == NodeState.READY
        assert w.managers[-1] == old_addr  # the failed manager is tried last from now on


async def test_the_session_moves_over_the_standby_connection_without_a_new_one(cluster):
    """The leader's process dies and the worker's standby manager becomes the leader: the
    session is opened over the standby's connection (no new connection, so no TLS handshake
    in a real cluster: issue 13's failover at 1,000 nodes), and the worker beats on it."""
    proposer, directory, (old, new) = cluster
    node_id = await add_node(proposer)
    async with worker(node_id, [old.addr, new.addr]) as w:
        await w.wait_connected(5)
        await wait_until(lambda: w.standby_addr == new.addr and new.dispatcher._watchers,
                         what="standby on the follower")
        standby_conn = w._warm_standby(new.addr).connection
        await old.server.stop()  # connections reset: the worker notices at once
        await old.dispatcher.stop()
        directory.leader = new.addr
        new.dispatcher.start()
        # the worker's side too: the dispatcher has the session before its answer arrives
        await wait_until(lambda: new.dispatcher.has_session(node_id) and w.connected.is_set()
                         and w.manager_addr == new.addr, what="failover")
        assert w.stats["sessions_via_standby"] == 1
        assert w._client.connection is standby_conn  # the same connection, no new handshake
        beats = w.stats["heartbeats"]
        await wait_until(lambda: w.stats["heartbeats"] >= beats + 2, what="heartbeats on it")
        assert state_of(proposer, node_id) == NodeState.READY


class SilentProxy:
    """A TCP relay to a manager that can go silent like a host that lost power: bytes are
    dropped and no connection is closed (no FIN, no RST), new connections are accepted and
    never answered."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.silent = False
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, LOOPBACK, 0)

    @property
    def addr(self) -> str:
        return f"{LOOPBACK}:{self.server.sockets[0].getsockname()[1]}"

    async def _accept(self, reader, writer) -> None:
        self._writers.append(writer)
        if self.silent:
            return
        ur, uw = await asyncio.open_connection(LOOPBACK, self.target_port)
        self._writers.append(uw)
        for src, dst in ((reader, uw), (ur, writer)):
            t = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(t)

    async def _pipe(self, src, dst) -> None:
        while data := await src.read(65536):
            if not self.silent:
                dst.write(data)
                await dst.drain()

    async def close(self) -> None:
        self.server.close()
        for t in self._tasks:
            t.cancel()
        for w in self._writers:
            w.transport.abort()


async def test_standby_moves_the_session_when_the_leaders_host_goes_silent(cluster):
    """Power cut of the leader's host: its connections go silent. A surviving manager (the
    worker's standby) pushes the new leader, and the worker is there long before its heartbeat
    to the dead one would even time out; it is never anything but Ready."""
    proposer, directory, (old, new) = cluster
    proxy = SilentProxy(old.server.bound_port)
    await proxy.start()
    directory.manager_list = [{"node_id": "m0", "addr": proxy.addr}, {"node_id": "m1", "addr": new.addr}]
    directory.leader = proxy.addr
    node_id = await add_node(proposer)
    states = proposer.store.watch("node", filter=lambda e: e.new is not None and e.new.id == node_id)
    try:
        # a 5 s heartbeat timeout: only the push can explain a move within a couple of seconds
        async with worker(node_id, [proxy.addr], min_heartbeat_timeout=5.0) as w:
            await w.wait_connected(5)
            await wait_until(lambda: w.standby_addr == new.addr and w.stats["heartbeats"] >= 3,
                             what="standby on the follower")
            await wait_until(lambda: new.dispatcher._watchers, what="standby watching")
            proxy.silent = True  # the power cut
            await old.dispatcher.stop()
            new.dispatcher.start()
            pushed = time.monotonic()
            directory.set_leader(new.addr, 2)  # the follower's Raft sees the new leader
            moved = await wait_until(lambda: new.dispatcher.has_session(node_id), what="moved")
            assert moved - pushed < 2.5, moved - pushed
            assert w.manager_addr == new.addr and w.stats["moved_by_push"] == 1
            assert w.managers[-1] == proxy.addr  # the dead one is tried last from now on
            await asyncio.sleep(3 * GRACE)
            # never Down (a 0.3 s grace on a loaded machine may show it Unknown for a moment)
            assert NodeState.DOWN not in {e.new.status.state for e in states.drain()}
            assert state_of(proposer, node_id) == NodeState.READY
            await wait_until(lambda: w.standby_addr == proxy.addr, what="a new standby")
    finally:
        states.close()
        await proxy.close()


async def test_worker_retries_with_backoff_until_a_manager_appears(cluster):
    proposer, directory, (leader, follower) = cluster
    await leader.dispatcher.stop()
    directory.leader = None
    node_id = await add_node(proposer)
    async with worker(node_id, [leader.addr, follower.addr]) as w:
        await wait_until(lambda: w.stats["failed_rounds"] >= 3, what="failed rounds")
        assert not w.connected.is_set()
        assert "not the leader" in (w.last_error or "")
        directory.leader = follower.addr
        follower.dispatcher.start()
        await w.wait_connected(5)
        assert w.manager_addr == follower.addr


async def test_unknown_node_keeps_retrying_with_a_clear_error(cluster):
    _proposer, _directory, (leader, _follower) = cluster
    async with worker(new_id(), [leader.addr]) as w:
        await wait_until(lambda: w.stats["failed_rounds"] >= 2, what="failed rounds")
        assert "node_not_found" in w.last_error


async def test_pushes_from_the_session_reach_handlers(cluster):
    proposer, _directory, (leader, _follower) = cluster
    node_id = await add_node(proposer)
    got: list = []
    w = worker(node_id, [leader.addr])
    w.on_push("test.assign", got.append)
    leader.dispatcher.add_session_listener(
        lambda nid: asyncio.ensure_future(leader.dispatcher.push(nid, "test.assign", {"all": 1}))
    )
    async with w:
        await w.wait_connected(5)
        await wait_until(lambda: got == [{"all": 1}], what="push on session open")
        assert await leader.dispatcher.push(node_id, "test.assign", {"one": 2})
        await wait_until(lambda: len(got) == 2, what="second push")
    assert got == [{"all": 1}, {"one": 2}]


async def test_async_describe_and_advertised_addr(cluster):
    proposer, _directory, (leader, _follower) = cluster
    node_id = await add_node(proposer)

    async def adescribe():
        return {"hostname": "async-host"}

    async with worker(node_id, [leader.addr], describe=adescribe, addr="192.0.2.7") as w:
        await w.wait_connected(5)
    node = proposer.store.view().get_node(node_id)
    assert node.description.hostname == "async-host"
    assert node.status.addr == "192.0.2.7"


def test_worker_needs_valid_manager_addresses():
    with pytest.raises(ValueError):
        WorkerSession("n", [])
    with pytest.raises(ValueError):
        WorkerSession("n", ["no-port"])


@pytest.mark.parametrize("large", [True, False])
async def test_a_slow_leader_keeps_a_large_clusters_sessions(large):
    """Heartbeat answers late past the worker's timeout, on a connection that stays open: in a
    large cluster (the managers' ``spread_s`` says so) the worker beats again on it instead of
    re-opening its session (a TLS handshake, the session write, the assignments: a thousand
    workers doing that at once buried a starved leader, issue 13); in a small one it re-opens
    as before."""
    from swarmkit_py.proto import HEARTBEAT

    proposer, directory = LocalProposer(), StaticDirectory()
    server = RpcServer(LOOPBACK, 0)
    # the managers' spread_s counts every node: 11 at 2 heartbeats/s say "large" (5.5 s)
    # while the one live node keeps the period at 0.5 s; at the default rate it is 0.04 s
    for _ in range(10):
        await proposer.propose(Transaction().create(
            Node(id=new_id(), role=NodeRole.WORKER, status=NodeStatus(state=NodeState.DOWN))))
    d = Dispatcher(proposer, heartbeat_period=0.5, grace_multiplier=10,  # never Down here
                   max_heartbeat_rate=2.0 if large else 250.0,
                   identify=params_identity, directory=directory)
    d.register(server)
    late = [2]

    async def slow_heartbeat(peer, params):
        if late[0] > 0:
            late[0] -= 1
            await asyncio.sleep(1.3)  # past the worker's 1 s timeout (two periods)
        return await d._handle_heartbeat(peer, params)

    server.remove_handler(HEARTBEAT)
    server.add_handler(HEARTBEAT, slow_heartbeat)
    await server.start()
    addr = f"{LOOPBACK}:{server.bound_port}"
    directory.manager_list = [{"node_id": "m0", "addr": addr}]
    directory.leader = addr
    d.start()
    node_id = await add_node(proposer)
    try:
        async with worker(node_id, [addr]) as w:
            await w.wait_connected(5)
            await wait_until(lambda: w.stats["heartbeats"] >= 2 and late[0] == 0, timeout=15,
                             what="the slow answers, then beats")
            if large:
                assert w.stats["slow_heartbeats"] >= 1 and w.stats["sessions_opened"] == 1, (w.stats, w.last_error)
            else:
                assert w.stats["slow_heartbeats"] == 0 and w.stats["sessions_opened"] >= 2
            assert state_of(proposer, node_id) == NodeState.READY
    finally:
        await d.stop()
        await server.stop()
