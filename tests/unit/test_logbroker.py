"""The log broker and any manager's log stream, with a fake dispatcher (sessions and pushes)
and a real RPC hop for the follower's forwarding: bounded queues with credit, a node asked
again after a new session from just after its last line, a followed task asked once its node
connects, and a stream that moves to a new leader without repeating a line."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from swarmkit_py.manager import logbroker
from swarmkit_py.manager.logbroker import LogBroker
from swarmkit_py.manager.logreader import LogReader, LogRequest
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.proto import LOGS_CANCEL, LOGS_SUBSCRIBE
from swarmkit_py.rpc import RpcClient, RpcServer
from swarmkit_py.store import (
    ContainerSpec,
    Task,
    TaskSpec,
    TaskState,
    TaskStatus,
    Transaction,
)

LOOPBACK = "127.0.0.1"


class FakeDispatcher:
    def __init__(self, proposer):
        self.proposer = proposer
        self.running = True
        self.sessions: set[str] = set()
        self.pushed: list[tuple[str, str, dict]] = []
        self.listeners = []

    def add_session_listener(self, listener):
        self.listeners.append(listener)

    def has_session(self, node_id):
        return node_id in self.sessions

    async def push(self, node_id, method, params=None):
        if node_id not in self.sessions:
            return False
        self.pushed.append((node_id, method, params))
        return True

    def session_node(self, peer, params):
        return params["node"]

    async def open_session(self, node_id):
        self.sessions.add(node_id)
        for listener in self.listeners:
            await listener(node_id)

    def subscribes(self, node_id=None):
        return [p for n, m, p in self.pushed if m == LOGS_SUBSCRIBE and node_id in (None, n)]


def task(tid, node_id, state=TaskState.RUNNING):
    return Task(id=tid, service_id="svc", slot=1, node_id=node_id, desired_state=TaskState.RUNNING,
                status=TaskStatus(state=state),
                spec=TaskSpec(container_spec=ContainerSpec(image="busybox")))


async def store_with(*tasks):
    p = LocalProposer()
    tx = Transaction()
    for t in tasks:
        tx.create(t)
    await p.propose(tx)
    return p


async def publish(broker, sub_id, node, task_id, *lines, done=False):
    params = {"sub": sub_id, "node": node, "done": [task_id] if done else [],
              "messages": [{"task_id": task_id, "ts": ts, "stream": stream, "data": data}
                           for ts, stream, data in lines]}
    return await broker._handle_publish(None, params)


async def test_publish_takes_only_what_fits_and_keeps_stdout_and_stderr_apart(monkeypatch):
    monkeypatch.setattr(logbroker, "QUEUE", 3)
    d = FakeDispatcher(await store_with(task("t1", "n1")))
    d.sessions.add("n1")
    broker = LogBroker(d)
    sub = await broker.subscribe(LogRequest("svc", stderr=False))
    [asked] = d.subscribes("n1")
    assert asked["tasks"] == ["t1"] and asked["stderr"] is False and asked["stdout"] is True
    lines = [(i, 1 + i % 2, b"line %d" % i) for i in range(1, 6)]
    assert await publish(broker, sub.id, "n1", "t1", *lines, done=True) == {"accepted": 3, "open": True}
    got, ended = await broker.next(sub, 10, 0)
    assert [(m.ts, m.stream) for m in got] == [(1, 2), (2, 1), (3, 2)] and not ended
    answer = await publish(broker, sub.id, "n1", "t1", *lines[3:], done=True)
    assert answer == {"accepted": 2, "open": True}
    got, ended = await broker.next(sub, 10, 0)
    assert [m.data for m in got] == [b"line 4", b"line 5"] and ended
    await broker.close(sub)
    assert (await publish(broker, sub.id, "n1", "t1", *lines))["open"] is False


async def test_a_node_is_asked_again_after_its_last_line_and_a_waiting_one_when_it_connects():
    d = FakeDispatcher(await store_with(task("t1", "n1"), task("t2", "n2")))
    d.sessions.add("n1")  # n2 has no session yet
    broker = LogBroker(d)
    sub = await broker.subscribe(LogRequest("svc", follow=True, tail=5))
    await publish(broker, sub.id, "n1", "t1", (10, 1, b"a"), (20, 1, b"b"))
    assert [p["tasks"] for p in d.subscribes()] == [["t1"]]
    await d.open_session("n1")  # its agent restarted: asked again, from after its last line
    again = d.subscribes("n1")[-1]
    assert again["tasks"] == ["t1"] and again["after"] == {"t1": [20, 0]} and again["tail"] == 5
    await d.open_session("n2")
    assert d.subscribes("n2")[-1]["tasks"] == ["t2"]
    await broker.close(sub)
    assert {(n, m) for n, m, _ in d.pushed if m == LOGS_CANCEL} == {("n1", LOGS_CANCEL),
                                                                   ("n2", LOGS_CANCEL)}


async def test_a_follower_stream_moves_to_the_new_leader_without_repeating_a_line():
    """Stream opened on this manager's broker (it led); it loses leadership; the stream opens
    the subscription again on the new leader over RPC, with the last delivered timestamp."""
    store = await store_with(task("t1", "n1"))
    here, there = FakeDispatcher(store), FakeDispatcher(store)
    here.sessions.add("n1")
    there.sessions.add("n1")
    local, leader = LogBroker(here), LogBroker(there)
    server = RpcServer(LOOPBACK, 0)
    leader.register(server)
    await server.start()
    raft = SimpleNamespace(is_leader=True, leader_addr=lambda: "me")

    def leader_client(timeout):
        return "there", RpcClient(LOOPBACK, server.bound_port, timeout=timeout)

    reader = LogReader(local, SimpleNamespace(raft=raft, leader_client=leader_client))
    stream = await reader.open(LogRequest("svc", None, True, None, None))
    seen: list[bytes] = []

    async def consume():
        async for msg in stream.messages():
            seen.append(msg.data)

    consumer = asyncio.create_task(consume())
    try:
        [(sub_id, _)] = list(local.subs.items())
        await publish(local, sub_id, "n1", "t1", (10, 1, b"one"), (20, 1, b"two"))
        await wait_for(lambda: seen == [b"one", b"two"])
        here.running, raft.is_leader = False, False  # an election elsewhere
        raft.leader_addr = lambda: "there"
        await wait_for(lambda: leader.subs, what="the subscription opened on the new leader")
        [(remote_id, remote)] = list(leader.subs.items())
        assert there.subscribes("n1")[-1]["after"] == {"t1": [20, 0]}
        assert remote.lease_until is not None and not local.subs
        # a worker that still had a line in flight from before: dropped, not shown twice
        await publish(leader, remote_id, "n1", "t1", (15, 1, b"old"), (30, 2, b"three"))
        await wait_for(lambda: seen == [b"one", b"two", b"three"])
        # the engine orders lines per stream only: an stdout line stamped before the last
        # stderr line can come after it, and is shown (one mark per stream, not one per task)
        await publish(leader, remote_id, "n1", "t1", (25, 1, b"late stdout"), (24, 1, b"old"))
        await wait_for(lambda: seen == [b"one", b"two", b"three", b"late stdout"])
        assert stream.after == {"t1": [25, 30]}
        assert stream.reopened == 1
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await stream.close()
    await wait_for(lambda: not leader.subs, what="the leader to close the subscription "
                                                 "when the follower's connection went")
    await server.stop()


async def test_remote_calls_need_a_manager_and_a_leader():
    from swarmkit_py.rpc import RpcError

    d = FakeDispatcher(await store_with(task("t1", "n1")))
    broker = LogBroker(d, authorize=lambda peer: peer == "manager")
    with pytest.raises(RpcError) as e:
        await broker._handle_open("worker", {"service_id": "svc"})
    assert e.value.code == "permission_denied"
    d.running = False
    with pytest.raises(RpcError) as e:
        await broker._handle_open("manager", {"service_id": "svc"})
    assert e.value.code == "not_leader"
    d.running = True
    with pytest.raises(RpcError) as e:
        await broker._handle_open("manager", {"service_id": "svc", "tail": "ten"})
    assert e.value.code == "invalid_argument"


async def wait_for(pred, timeout: float = 10.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
