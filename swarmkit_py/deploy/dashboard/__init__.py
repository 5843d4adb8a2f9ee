"""`invoke dashboard`: a live view of the cluster, served to the operator's browser on 127.0.0.1.

One column per node (role, Leader/Reachable/Unreachable, Ready/Down, availability) with the
tasks on it coloured by state, the services with their replica counts, and the leader, updated
live. Swarm operators reach for a visualizer to see which task runs where; this one needs
nothing installed on the cluster.

Where the data comes from: the cluster's Docker API with the operator's client bundle (the
same `Cluster` client `invoke status` uses), polled at a bounded rate (`interval`, at least
0.5 s) by ONE loop however many pages are open, and pushed to pages with server-sent events.
Alongside, every host's cluster port is probed with a short TCP connect: a host that lost
power stops answering at once, while the cluster only marks it Down after missed heartbeats,
so the column turns red within about a second and says which of the two it is. When the
manager the view talks to dies, the next poll moves to a manager that still answers. The Raft
term and commit index are not in the Docker API; where the inventory turns the agents'
Prometheus endpoint on (`swarmkit_metrics_port`), each manager's are read from it.

Server side: aiohttp (already the runtime's HTTP library; maintained, asyncio, streaming
responses for SSE). Front end: one HTML page, plain JavaScript (EventSource) and CSS, no build
step, no downloaded toolchain. It binds 127.0.0.1 only: the page shows the cluster to whoever
can open it, so it is the operator's, like the client bundle it uses.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import api
from ..cluster import Cluster, row
from ..ssh import fan_out

STATIC = Path(__file__).parent / "static"
MIN_INTERVAL = 0.5
PROBE_TIMEOUT = 0.4
API_TIMEOUT = 3.0


RAFT_METRICS = {"swarmkit_raft_term": "term", "swarmkit_raft_commit_index": "commit",
                "swarmkit_raft_is_leader": "leader"}


def raft_metrics(addr: str, port: int, timeout: float = PROBE_TIMEOUT) -> dict[str, int] | None:
    """A manager's Raft term, commit index and leadership from its /metrics; None if it has
    none (a worker, metrics off) or does not answer."""
    try:
        with urllib.request.urlopen(f"http://{addr}:{port}/metrics", timeout=timeout) as r:
            text = r.read(1 << 20).decode()
    except (OSError, ValueError):
        return None
    out = {}
    for name, key in RAFT_METRICS.items():
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        if m:
            out[key] = int(float(m.group(1)))
    return out or None


def probe(addr: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Does the host accept a TCP connection on its cluster port right now?"""
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


class View:
    """Builds snapshots of the cluster (blocking calls; run in a worker thread)."""

    def __init__(self, cl: Cluster):
        self.cl = cl
        self.hosts = list(cl.inv.hosts.values())
        self.last_nodes: list[dict] = []

    def _client(self, answering: dict[str, bool]):
        """The cached API client, else one to a manager whose port answers (known managers
        first), so a dead entry manager costs one failed poll, not a timeout per host."""
        if self.cl.connected:
            return self.cl.client()
        managers = {r["hostname"] for r in map(row, self.last_nodes) if r["manager"]}
        order = sorted(self.cl.candidates(), key=lambda h: (not answering.get(h.name), h.name not in managers))
        return self.cl.client(prefer=order[0] if order else None, timeout=API_TIMEOUT * 3)

    def probe(self) -> dict[str, bool]:
        """host -> does its cluster port answer (all hosts at once, PROBE_TIMEOUT at most)."""
        up = fan_out(self.hosts, lambda h: probe(h.advertise_ip, int(h.vars["swarmkit_cluster_port"])),
                     forks=len(self.hosts))
        return {h.name: ok is True for h, ok in zip(self.hosts, up, strict=True)}

    @staticmethod
    def with_answering(state: dict[str, Any], answering: dict[str, bool]) -> dict[str, Any]:
        """The last snapshot with fresh probe results: published before the API is asked,
        which may take API_TIMEOUT when the manager it talks to just died."""
        nodes = [{**n, "answering": answering.get(n["hostname"], n["answering"])} for n in state["nodes"]]
        return {**state, "nodes": nodes, "time": time.time()}

    def snapshot(self, answering: dict[str, bool]) -> dict[str, Any]:
        t0 = time.monotonic()
        out: dict[str, Any] = {"time": time.time(), "error": None, "via": None, "leader": None,
                               "nodes": [], "services": [], "tasks": []}
        try:
            c = self._client(answering)
            nodes, services, tasks = c.api.nodes(), c.api.services(), c.api.tasks()
            out["via"] = self.cl.entry.name
        except Exception as e:  # the entry manager died or lost quorum: say so, retry elsewhere
            self.cl.forget_client()
            out["error"] = f"cluster API: {api.explain(e)}"
            nodes, services, tasks = self.last_nodes, [], []
        else:
            self.last_nodes = nodes
        known = set()
        for n in nodes:
            r = row(n)
            known.add(r["hostname"])
            r["id"] = n.get("ID", "")
            r["answering"] = answering.get(r["hostname"])
            r["addr"] = (n.get("Status") or {}).get("Addr", "")
            if r["manager"] == "Leader":
                out["leader"] = r["hostname"]
            out["nodes"].append(r)
        for h in self.hosts:  # inventory hosts not (yet) in the swarm
            if h.name not in known:
                out["nodes"].append({"hostname": h.name, "id": "", "status": "Not joined", "availability": "",
                                     "manager": "", "role": "", "version": "", "addr": h.advertise_ip,
                                     "answering": answering[h.name]})
        out["nodes"].sort(key=lambda r: r["hostname"])
        self._add_raft(out)
        names = {s["ID"]: s.get("Spec", {}).get("Name", s["ID"][:12]) for s in services}
        # as `docker service ps` without history: the tasks meant to run (a task told to shut
        # down leaves its node's column at once, and its replacement shows where it goes)
        live = [t for t in tasks if t.get("DesiredState") in ("running", "ready", "accepted")]
        for t in live:
            st = t.get("Status") or {}
            out["tasks"].append({"id": t["ID"], "service": names.get(t.get("ServiceID"), t.get("ServiceID", "")[:12]),
                                 "slot": t.get("Slot"), "node": t.get("NodeID", ""), "state": st.get("State", ""),
                                 "desired": t.get("DesiredState", ""), "message": st.get("Err") or st.get("Message", "")})
        for s in services:
            spec = s.get("Spec", {})
            want = spec.get("Mode", {}).get("Replicated", {}).get("Replicas")
            running = sum(1 for t in live if t.get("ServiceID") == s["ID"]
                          and (t.get("Status") or {}).get("State") == "running")
            out["services"].append({"name": names[s["ID"]], "running": running, "desired": want,
                                    "image": spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", "")})
        out["services"].sort(key=lambda s: s["name"])
        out["took_ms"] = round((time.monotonic() - t0) * 1000)
        return out


    def _add_raft(self, out: dict[str, Any]) -> None:
        """Each answering manager's Raft numbers (where metrics are on), and the term."""
        hosts = {h.name: h for h in self.hosts}
        mgrs = [n for n in out["nodes"] if n.get("role") == "manager" and n.get("answering")
                and n["hostname"] in hosts and int(hosts[n["hostname"]].vars["swarmkit_metrics_port"])]
        found = fan_out(mgrs, lambda n: raft_metrics(hosts[n["hostname"]].advertise_ip,
                                                     int(hosts[n["hostname"]].vars["swarmkit_metrics_port"])),
                        forks=max(1, len(mgrs)))
        for n, raft in zip(mgrs, found, strict=True):
            n["raft"] = raft if isinstance(raft, dict) else None
        terms = [n["raft"]["term"] for n in mgrs if n.get("raft") and "term" in n["raft"]]
        out["term"] = max(terms) if terms else None


class Dashboard:
    """The polling loop and the web app around one View."""

    def __init__(self, view: View, interval: float = 1.0):
        if interval < MIN_INTERVAL:
            raise ValueError(f"--interval must be at least {MIN_INTERVAL}s (the cluster's API is shared)")
        self.view = view
        self.interval = interval
        self.state: dict[str, Any] | None = None
        self.version = 0
        self._changed = asyncio.Condition()

    async def poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            answering = await loop.run_in_executor(None, self.view.probe)
            last = self.state
            if last is not None and any(n["answering"] != answering.get(n["hostname"], n["answering"])
                                        for n in last["nodes"]):
                await self._publish(self.view.with_answering(last, answering))
            await self._publish(await loop.run_in_executor(None, self.view.snapshot, answering))
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - t0)))

    async def _publish(self, state: dict[str, Any]) -> None:
        async with self._changed:
            self.state, self.version = state, self.version + 1
            self._changed.notify_all()

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def current(self, request: web.Request) -> web.Response:
        async with self._changed:
            await self._changed.wait_for(lambda: self.state is not None)
            return web.json_response(self.state)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: every new snapshot as one `data:` line, a comment every 15 s
        so proxies and browsers keep the stream open."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        seen = 0
        while True:
            state = None
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda s=seen: self.version > s), 15)
                    seen, state = self.version, self.state
                except TimeoutError:
                    pass
            await resp.write(b": keep-alive\n\n" if state is None else b"data: " + json.dumps(state).encode() + b"\n\n")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get("/api/state", self.current)
        app.router.add_get("/api/events", self.events)
        app.router.add_static("/static/", STATIC)

        async def start_polling(app: web.Application):
            task = asyncio.create_task(self.poll())
            yield
            task.cancel()

        app.cleanup_ctx.append(start_polling)
        return app


def serve(cl: Cluster, port: int = 8765, interval: float = 1.0, ready=None) -> None:
    """Serve the dashboard on 127.0.0.1:`port` (0: any free port) until interrupted;
    `ready(url)` is called once it listens."""
    dash = Dashboard(View(cl), interval)
    cl.api_timeout = min(cl.api_timeout, API_TIMEOUT)  # a dead manager must not stall the view

    async def main():
        runner = web.AppRunner(dash.app(), handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]
        if ready:
            ready(f"http://127.0.0.1:{bound}/")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
