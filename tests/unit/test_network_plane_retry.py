"""The network plane keeps trying a map it could not apply (the engine down, say), less and
less often while it fails the same way, with one traceback per kind of failure instead of two
a second, and says when it is applied again."""

from __future__ import annotations

import asyncio
import logging
import time
from itertools import pairwise

from swarmkit_py.worker.network import plane as plane_mod
from swarmkit_py.worker.network.plane import NetworkPlane

EMPTY = {"networks": [], "nodes": {}, "services": [], "tasks": []}


class Engine:
    def networks(self, filters=None):
        return []


async def test_a_failing_map_is_retried_with_a_growing_delay_and_one_traceback(monkeypatch, caplog):
    monkeypatch.setattr(plane_mod, "RETRY_FIRST", 0.02)
    monkeypatch.setattr(plane_mod, "RETRY_MAX", 0.16)
    calls: list[float] = []
    down = {"until": 6}

    def factory():
        calls.append(time.monotonic())  # on the plane's worker thread
        if len(calls) <= down["until"]:
            raise ConnectionRefusedError(111, "Connection refused")
        return Engine()

    p = NetworkPlane("n1", "127.0.0.1", factory, kernel=False)
    caplog.set_level(logging.DEBUG, logger=plane_mod.__name__)
    p.start()
    try:
        p.on_netmap(EMPTY)
        for _ in range(300):
            if p.applied:
                break
            await asyncio.sleep(0.01)
        assert p.applied == 1 and len(calls) == 7
        gaps = [b - a for a, b in pairwise(calls)]
        # each wait at least its delay: doubling from 0.02 s, capped at 0.16 s (a wait can
        # only be longer on a loaded machine, so only the lower bounds are asserted, and
        # that the cap holds within a generous margin)
        for gap, delay in zip(gaps, (0.02, 0.04, 0.08, 0.16, 0.16, 0.16), strict=True):
            assert gap >= delay * 0.9, gaps
        assert calls[-1] - calls[0] < 3.0, gaps
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is not None
        assert any("applied again, after 6 failed attempts" in r.getMessage() for r in caplog.records)
    finally:
        await p.stop()


async def test_a_new_map_is_tried_at_once_even_while_backing_off(monkeypatch):
    monkeypatch.setattr(plane_mod, "RETRY_FIRST", 5.0)
    monkeypatch.setattr(plane_mod, "RETRY_MAX", 5.0)
    calls: list[float] = []

    def factory():
        calls.append(time.monotonic())  # on the plane's worker thread
        if len(calls) == 1:
            raise ConnectionRefusedError(111, "Connection refused")
        return Engine()

    p = NetworkPlane("n1", "127.0.0.1", factory, kernel=False)
    p.start()
    try:
        p.on_netmap(EMPTY)
        await asyncio.sleep(0.2)
        assert len(calls) == 1 and p.applied == 0  # waiting out its 5 s
        p.on_netmap(dict(EMPTY))
        for _ in range(100):
            if p.applied:
                break
            await asyncio.sleep(0.01)
        assert p.applied == 1 and calls[1] - calls[0] < 1.0
    finally:
        await p.stop()
