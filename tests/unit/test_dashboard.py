"""The dashboard's server without a cluster: one poll loop feeds every page, probes first.

The View is a fake here (no cluster); the real one is driven in a browser against a lab in
tests/browser/test_dashboard.py.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from aiohttp.test_utils import TestClient, TestServer

from swarmkit_py.deploy.dashboard import Dashboard, View, probe, raft_metrics


class FakeView:
    def __init__(self):
        self.snapshots = 0
        self.up = {"h1": True, "h2": True}
        self.probed_at: dict[int, dict] = {}  # snapshot number -> the probes it was made with

    def probe(self):
        return dict(self.up)

    with_answering = staticmethod(View.with_answering)

    def snapshot(self, answering):
        self.snapshots += 1
        self.probed_at[self.snapshots] = dict(answering)
        return {"time": 0, "error": None, "via": "h1", "leader": "h1", "term": 3, "took_ms": 1,
                "nodes": [{"hostname": h, "answering": ok, "status": "Ready"} for h, ok in answering.items()],
                "services": [], "tasks": [], "n": self.snapshots}


async def events(client, count: int) -> list[dict]:
    out = []
    async with client.get("/api/events") as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        async for line in resp.content:
            if line.startswith(b"data: "):
                out.append(json.loads(line[6:]))
                if len(out) == count:
                    return out
    return out


async def test_pages_share_one_poll_loop_and_see_a_dead_host_first():
    view = FakeView()
    dash = Dashboard(view, interval=0.5)
    async with TestClient(TestServer(dash.app())) as client:
        page = await client.get("/")
        assert page.status == 200 and "EventSource" not in await page.text()  # the HTML; JS is static
        assert (await client.get("/static/app.js")).status == 200
        two = await asyncio.gather(events(client, 2), events(client, 2))
        assert [s["n"] for s in two[0]] == [s["n"] for s in two[1]]  # the same snapshots for both pages
        view.up["h2"] = False  # h2 lost power: published before the (slow) API is asked again
        nxt = await events(client, 3)
        first_down = next(s for s in nxt if not s["nodes"][1]["answering"])
        # the previous snapshot (made while h2 answered) went out again with the new probes
        assert view.probed_at[first_down["n"]]["h2"] is True
        state = await (await client.get("/api/state")).json()
        assert state["leader"] == "h1"
    assert view.snapshots <= 8  # bounded: about 2 per second, not one per page


def test_interval_is_bounded_and_probes_are_quick():
    with pytest.raises(ValueError, match="at least 0.5"):
        Dashboard(FakeView(), interval=0.1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert probe("127.0.0.1", port)
    assert not probe("127.0.0.1", port)  # closed now
    assert raft_metrics("127.0.0.1", port) is None
