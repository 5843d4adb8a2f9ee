"""The container events stream behind running tasks' waits (executor/exits.py), on a fake
engine client: exits reach the right waiter, a (re)connection makes every waiter look again,
and no reader is left once nothing waits."""

from __future__ import annotations

import asyncio
import queue
import threading

from swarmkit_py.worker.executor.exits import DIE, RECHECK, ExitWatch

END = object()


class FakeStream:
    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()
        self.closed = False

    def __iter__(self):
        while True:
            item = self.q.get()
            if item is END:
                raise ConnectionError("stream closed")
            yield item

    def close(self) -> None:
        self.closed = True
        self.q.put(END)


class FakeClient:
    """The engine client's `events` (swarmkit_py/engine.py)."""

    def __init__(self) -> None:
        self.streams: list[FakeStream] = []
        self.filters: list[dict] = []
        self.opened = threading.Event()

    def events(self, filters: dict) -> FakeStream:
        self.filters.append(filters)
        s = FakeStream()
        self.streams.append(s)
        self.opened.set()
        return s


def die(cid: str, code: str) -> dict:
    return {"Type": "container", "Action": DIE, "Actor": {"ID": cid, "Attributes": {"exitCode": code}}}


async def until(cond, what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)
    assert cond(), what


async def test_exits_reach_their_waiter_and_reconnects_recheck_everyone():
    client = FakeClient()
    watch = ExitWatch(client)
    w1, w2 = watch.watch("c1"), watch.watch("c2")
    assert await w1.next(10) == (RECHECK, None)  # connected: anything earlier needs an inspect
    assert len(client.streams) == 1
    assert client.filters[0]["label"] == ["com.docker.swarm.task.id"]
    w1.clear()
    w2.clear()
    client.streams[0].q.put(die("c1", "3"))
    assert await w1.next(10) == (DIE, 3)
    assert await w2.next(0.2) is None  # another container's exit is not c2's
    # the engine restarts: the stream breaks, a new one opens and every waiter looks again
    w1.clear()
    client.streams[0].q.put(END)
    assert await w2.next(10) == (RECHECK, None)
    assert await w1.next(10) == (RECHECK, None)
    assert len(client.streams) == 2


async def test_no_reader_is_left_once_nothing_waits():
    client = FakeClient()
    watch = ExitWatch(client)
    w = watch.watch("c1")
    assert await w.next(10) == (RECHECK, None)
    reader = watch._thread
    watch.unwatch(w)
    assert client.streams[0].closed
    await until(lambda: not reader.is_alive(), "the reader thread ends")
    w = watch.watch("c1")  # a later wait opens a new stream
    assert await w.next(10) == (RECHECK, None)
    assert len(client.streams) == 2
    watch.unwatch(w)
