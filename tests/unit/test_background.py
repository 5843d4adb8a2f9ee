"""The loop helpers: a supervised background task, following the store, leader-only loops."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from swarmkit_py.background import Background
from swarmkit_py.manager.leadership import LeaderLoops
from swarmkit_py.raft.errors import NoQuorum
from swarmkit_py.store import MemoryStore, Node, Service, Transaction, new_id
from swarmkit_py.store.follow import StoreFollower


async def until(cond, what: str, timeout: float = 2.0):
    async with asyncio.timeout(timeout):
        while not (value := cond()):
            await asyncio.sleep(0.005)
    assert value, what
    return value


# -- Background ---------------------------------------------------------------------------------


async def test_a_loop_that_dies_is_logged_and_restarted(caplog):
    runs = []

    async def run():
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"boom {len(runs)}")
        await asyncio.Event().wait()

    bg = Background("flaky", run, backoff_initial=0.01, backoff_max=0.05)
    with caplog.at_level(logging.ERROR, logger="swarmkit_py.background"):
        bg.start()
        await until(lambda: len(runs) == 3, "third run")
    assert bg.running and bg.deaths == 2 and str(bg.error) == "boom 2"
    died = [r for r in caplog.records if "flaky died" in r.getMessage()]
    assert len(died) == 2 and died[0].exc_info is not None
    await bg.stop()
    assert not bg.running


async def test_on_death_is_called_instead_of_a_restart():
    deaths = []

    async def run():
        raise ValueError("evicted")

    bg = Background("renewer", run, on_death=lambda name, exc: deaths.append((name, str(exc))))
    bg.start()
    await bg.wait()
    assert deaths == [("renewer", "evicted")]
    assert not bg.running and bg.deaths == 1


async def test_a_finished_loop_is_not_restarted_and_stop_is_idempotent():
    calls = []

    async def run():
        calls.append(1)

    bg = Background("once", run)
    bg.start()
    await bg.wait()
    assert bg.finished and calls == [1] and bg.error is None
    await bg.stop()
    await bg.stop()


async def test_stop_cancels_a_running_loop_and_start_twice_runs_once():
    started = []
    cancelled = asyncio.Event()

    async def run():
        started.append(1)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bg = Background("long", run)
    bg.start()
    bg.start()
    await until(lambda: started, "started")
    await bg.stop()
    assert cancelled.is_set() and started == [1] and bg.error is None


# -- StoreFollower -----------------------------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.index = 0
        self.rng = random.Random(3)

    def create(self, obj) -> None:
        self.index += 1
        self.store.apply(self.index, Transaction().create(obj).encode())

    def node(self) -> Node:
        return Node(id=new_id(self.rng))

    def service(self, name: str) -> Service:
        return Service(id=new_id(self.rng), spec={"Name": name})


async def test_follower_batches_events_and_filters_kinds():
    log = Log()
    f = StoreFollower(log.store, "node")
    f.open()
    a, b = log.node(), log.node()
    log.create(a)
    log.create(log.service("web"))
    log.create(b)
    events = await f.next()
    assert [e.obj.id for e in events] == [a.id, b.id]
    assert await f.next(timeout=0.01) == []
    f.close()


async def test_follower_kick_wakes_a_waiting_next():
    f = StoreFollower(Log().store, "node")
    f.open()
    waiting = asyncio.create_task(f.next())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    f.kick()
    assert await waiting == []
    f.close()


async def test_follower_says_resync_after_an_overflow_and_reopens():
    log = Log()
    f = StoreFollower(log.store, "node")
    f.open()
    f._watcher.limit = 1  # a slow consumer: the second event overflows the stream
    log.create(log.node())
    log.create(log.node())
    assert await f.next() is None
    assert f.resyncs == 1
    c = log.node()
    log.create(c)  # the fresh watch sees what comes next
    assert [e.obj.id for e in await f.next()] == [c.id]
    f.close()


async def test_follow_rescans_after_a_lost_stream():
    log = Log()
    f = StoreFollower(log.store, "node")
    scans, seen = [], []
    runner = asyncio.create_task(f.follow(lambda: scans.append(len(log.store.view().nodes())), seen.append))
    await until(lambda: scans, "first scan")
    log.create(log.node())
    await until(lambda: seen, "an event")
    log.store._hub.close_all("store restored from a snapshot")  # what a snapshot install does
    await until(lambda: len(scans) == 2, "a rescan")
    assert scans == [0, 1]
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert f._watcher is None


# -- LeaderLoops -------------------------------------------------------------------------------


class FakeRaft:
    def __init__(self) -> None:
        self.is_leader = False
        self.term = 1
        self.barrier_fails = 0

    async def read_index(self, timeout=None):
        if self.barrier_fails:
            self.barrier_fails -= 1
            raise NoQuorum("no quorum yet")


class Recorder:
    def __init__(self, name, journal, fail_start=False):
        self.name, self.journal, self.fail_start = name, journal, fail_start

    def start(self):
        self.journal.append(("start", self.name))
        if self.fail_start:
            raise RuntimeError("cannot start")

    async def stop(self):
        self.journal.append(("stop", self.name))


async def test_leader_loops_follow_leadership_in_order(caplog):
    raft, journal = FakeRaft(), []
    loops = LeaderLoops(raft, "m1")
    loops.add("a", Recorder("a", journal))
    loops.add("b", Recorder("b", journal, fail_start=True))
    ran = []
    task = loops.add_task("t", lambda: asyncio.Event().wait() if ran.append(1) is None else None)
    loops.start()
    await asyncio.sleep(0.01)
    assert journal == []  # a follower runs nothing
    raft.is_leader, raft.barrier_fails = True, 1
    with caplog.at_level(logging.ERROR):
        loops.leader_changed()
        await until(lambda: loops.leading, "leading")
    assert journal == [("start", "a"), ("start", "b")]
    assert any("leader loop b failed to start" in r.getMessage() for r in caplog.records)
    await until(lambda: ran, "the task runs")
    assert task.running
    raft.is_leader = False
    loops.leader_changed()
    await until(lambda: not loops.leading, "stepped down")
    assert journal[2:] == [("stop", "b"), ("stop", "a")] and not task.running
    await loops.stop()


@pytest.mark.parametrize("leader", [True, False])
async def test_leader_loops_stop_stops_everything(leader):
    raft, journal = FakeRaft(), []
    raft.is_leader = leader
    loops = LeaderLoops(raft, "m1")
    loops.add("a", Recorder("a", journal))
    loops.start()
    await asyncio.sleep(0.01)
    await loops.stop()
    assert journal == ([("start", "a"), ("stop", "a")] if leader else [])
