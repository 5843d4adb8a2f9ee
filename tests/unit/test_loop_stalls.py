"""Issue 13: what holds an agent's event loop is measured and said (loopwatch), and Raft's
election timing judges a busy leader by its own recent pace (RaftNode.election_stretch)."""

from __future__ import annotations

import asyncio
import logging
import random
import time

from swarmkit_py.loopwatch import LoopWatch
from swarmkit_py.raft.config import RaftConfig
from swarmkit_py.raft.core import RaftCore
from swarmkit_py.raft.kv.cluster import free_ports
from swarmkit_py.raft.kv.fsm import KVStateMachine, encode_put
from swarmkit_py.raft.node import RaftNode
from swarmkit_py.raft.transport import Transport
from swarmkit_py.raft.types import RaftRole


def hold_the_loop_for_a_while() -> None:
    time.sleep(0.6)  # a callback that blocks: what the watch must catch and name


async def test_a_held_loop_is_counted_and_the_culprit_named(caplog):
    caplog.set_level(logging.WARNING, "swarmkit_py.loopwatch")
    watch = LoopWatch(report_after=0.3, sample_every=0.01)
    watch.start()
    try:
        await asyncio.sleep(0.1)
        asyncio.get_running_loop().call_soon(hold_the_loop_for_a_while)
        deadline = time.monotonic() + 10
        # until the 0.6 s hold is recorded: on a loaded machine a shorter lag of the loop may
        # be counted first (a stall is any hold of 50 ms or more)
        while watch.max_s < 0.5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        watch.stop()
    assert watch.stalls.count >= 1 and watch.max_s >= 0.5
    held = [r.message for r in caplog.records if "event loop held" in r.message]
    assert any("hold_the_loop_for_a_while" in m for m in held), held


def test_a_followers_election_timeout_stretches_with_its_leaders_silences(tmp_path):
    cfg = RaftConfig()  # election timeout 0.3-0.6 s
    node = RaftNode(1, tmp_path, fsm=None, transport_factory=lambda on_message, **kw: None, config=cfg)
    node.core = RaftCore(1, cfg.core(), random.Random(1))
    assert node.core.role == RaftRole.FOLLOWER
    now = time.monotonic()
    node._note_leader_gap(0.1, now)  # heartbeats every 100 ms: as configured
    assert node.election_stretch == 1.0
    node._note_leader_gap(0.9, now)  # a leader busy for 0.9 s: two of those must fit
    assert 5.9 < node.election_stretch <= 6.0
    node._note_leader_gap(30.0, now)  # never more than max_election_stretch
    assert node.election_stretch == cfg.max_election_stretch
    node._leader_gap_at -= 10 * node.GAP_HALF_LIFE_S  # the busy spell is long past
    assert node.election_stretch == 1.0
    node.core.role = RaftRole.LEADER  # a leader's ticks (its heartbeats) are never stretched
    node._note_leader_gap(0.9, time.monotonic())
    assert node.election_stretch == 1.0



class SlowFSM(KVStateMachine):
    """Every entry costs `cost` seconds of the loop (as a 500-task entry does on a loaded
    manager); the order of applies is logged."""

    def __init__(self, cost: float, log: list) -> None:
        super().__init__()
        self.cost, self.log = cost, log

    def apply(self, index: int, data: bytes):
        time.sleep(self.cost)
        self.log.append(("apply", index))
        return super().apply(index, data)


async def test_a_backlog_of_committed_entries_is_applied_a_slice_per_ready(tmp_path):
    """Many entries committed at once are applied whole, in log order, each once, about
    `apply_slice_ms` of loop time per Ready: other callers of the loop run in between, and
    every write still gets its result."""
    log: list = []
    port = free_ports(1)[0]
    addr = f"127.0.0.1:{port}"
    node = RaftNode(1, tmp_path, SlowFSM(0.004, log),
                    lambda on_message, **kw: Transport(1, "127.0.0.1", port, on_message, **kw),
                    RaftConfig(apply_slice_ms=10), addr=addr)
    await node.start(bootstrap=True)
    try:
        deadline = time.monotonic() + 10
        while not node.is_leader:
            assert time.monotonic() < deadline, "no leader"
            await asyncio.sleep(0.02)
        done = asyncio.Event()

        async def another_caller() -> None:
            while not done.is_set():
                log.append(("other", None))
                await asyncio.sleep(0)

        other = asyncio.create_task(another_caller())
        slices0 = node.apply_time.count
        results = await node.propose_many([encode_put(f"k{i}", b"v") for i in range(20)])
        done.set()
        await other
    finally:
        await node.stop()
    assert len(results) == 20 and not any(isinstance(r, BaseException) for r in results)
    applied = [i for what, i in log if what == "apply"]
    assert applied == sorted(applied) and len(applied) == len(set(applied)) >= 20
    first, last = log.index(("apply", applied[-20])), log.index(("apply", applied[-1]))
    assert "other" in [what for what, _ in log[first:last]]  # the loop was handed back
    assert node.apply_time.count - slices0 >= 2


async def test_a_read_waits_on_its_future_with_a_deadline_and_no_extra_turn():
    """`_await_by`: the caller resumes the turn after its future is resolved (wait_for would
    take two), and a future still pending at the deadline fails with TimeoutError."""
    from swarmkit_py.raft.node import _await_by

    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    turns = 0

    async def resolve_then_count() -> None:
        nonlocal turns
        fut.set_result(7)
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(resolve_then_count())
    got = await _await_by(fut, loop.time() + 5)
    seen = turns
    counter.cancel()
    assert got == 7 and seen <= 1
    pending = loop.create_future()
    try:
        await _await_by(pending, loop.time() + 0.01)
    except TimeoutError:
        pass
    else:
        raise AssertionError("no TimeoutError at the deadline")
