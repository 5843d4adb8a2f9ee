"""The Docker API's front: its listeners on a thread and event loop of their own.

Why (issue 13): everything a manager does shares one event loop. While the control plane is
busy (10,000 tasks filling at 1,000 nodes, or `replicas: 100000` typed by mistake) that loop is
held most of the time in turns of 100-250 ms, and an API call waited behind such a turn at every
step it took on the loop: reading and decrypting the request, the handler, the read barrier's
future, each slice of the answer, the write. `docker service ls` took 300 ms to seconds, for a
few milliseconds of work of its own.

Here the listeners (the root-only unix socket and TCP with client certificates) are served by
a thread with its own loop. CPython hands the interpreter from a busy thread to a waiting one
every few milliseconds (`sys.getswitchinterval`), so this thread gets its turn within that,
whatever the manager's loop is doing. What it does itself:

- HTTP and TLS of every connection, and the authorization hook (`make_app`'s) of every request;
- the reads `docker service ls/ps/inspect` and `docker node ls/inspect` make (`READ_ROUTES`),
  with ControlAPI's own code. The read barrier is Raft's ReadIndex, confirmed on this thread
  by the read lane (raft/readlane.py) whenever it can, else asked with one turn of the
  manager's loop and answered where the core releases it (`RaftNode.read_index_threadsafe`;
  the coroutine `read_barrier` only while no leader is known); a lone voter's needs no round
  at all (`RaftNode.lone_read_index`: the core would release it at once, with its commit
  index). Raft's applied index is then waited for here. The store is read under its
  `commit_lock`, which apply holds only while it writes a decided transaction: an answer holds
  whole transactions, as on the loop, and the loop waits at most for that read;
- every other request is passed as it is, streamed both ways (logs -f, events), to the app on
  the manager's loop, listening on a private unix socket next to the public one (`BACKEND`),
  so writes, streams and everything the manager's loop owns stay where they were.

Reads stay linearizable (or answered stale and marked so) exactly as on the loop: the barrier
is the same; it is only asked from another thread. Passing a request on costs about a
millisecond (`GET /version` on an idle manager: 1.4-2.5 ms through the front, 0.6-1.4 ms to the
backend directly); no route is written twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

from ..histogram import Histogram
from ..manager.controlapi import ControlAPI
from ..manager.controlapi.control import LINEARIZABLE, READ_WAIT_S, STALE
from ..raft.errors import NoQuorum, NotLeader, ProposalDropped
from . import routes_nodes, routes_services, routes_system, routes_tasks
from .app import bare_app
from .chunked import RenderCache
from .keys import Authorize
from .params import MAX_BODY_BYTES
from .serve import serve_tcp, serve_unix
from .versioning import add_route

log = logging.getLogger(__name__)

READ_ROUTES = (
    ("/services", routes_services.list_services),
    ("/services/{ref}", routes_services.get_service),
    ("/nodes", routes_nodes.list_nodes),
    ("/nodes/{ref}", routes_nodes.get_node),
    ("/tasks", routes_tasks.list_tasks),
    ("/tasks/{ref}", routes_tasks.get_task),
    ("/_ping", routes_system.ping),
)
"""GET (and HEAD) routes answered on the front thread; everything else goes to the backend."""
BACKEND = web.AppKey("backend", aiohttp.ClientSession)
APPLY_POLL_S = 0.002
"""How often a lone voter's read looks whether the store has applied its read index."""
LANE_WAIT_S = 1.0
"""How long a read waits for the read lane's majority before it asks the core's round (the
rest of READ_WAIT_S)."""
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
})


class FrontControl(ControlAPI):
    """ControlAPI for the front thread: the barrier asked of the manager's loop `main` (or a
    lone voter's read index), the reads under the store's commit lock."""

    def __init__(self, ctx, main: asyncio.AbstractEventLoop) -> None:
        super().__init__(ctx)
        self._main = main
        self.read_wait = Histogram()
        """How long reads waited for `_confirm_read` (observed on the front thread only)."""
        self._lane = None  # the manager's read lane on this thread's loop, made at first use

    def lane_counts(self) -> dict[tuple[str, str], int]:
        """Reads the read lane confirmed, and those it passed to the core's round, by this
        manager's role then: ``{(role, outcome): n}``."""
        lane = self._lane
        return {(role, outcome): lane.counts[role, outcome] if lane else 0
                for role in ("leader", "follower") for outcome in ("confirmed", "declined")}

    async def aclose(self) -> None:
        """Close what the front thread opened for its reads (the read lane's connections)."""
        lane, self._lane = self._lane, None
        if lane is not None:
            await lane.aclose()

    def _read_section(self):
        return self.store.commit_lock

    async def _confirm_read(self) -> str:
        t0 = time.perf_counter()
        try:
            return await self._barrier()
        finally:
            self.read_wait.observe(time.perf_counter() - t0)

    async def _barrier(self) -> str:
        """The read barrier, in as few turns of the manager's loop as it takes: none for a
        lone voter, nor when the read lane confirms it (raft/readlane.py: on a leader by the
        other voters' terms, on a follower by its leader's commit index and the terms); else
        one to ask and the core's own (`read_index_threadsafe`); the coroutine
        `read_barrier` on that loop when no leader is known yet (it waits for one) or the
        context has none of these."""
        ctx = self.ctx
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_WAIT_S
        index = ctx.lone_read_index() if hasattr(ctx, "lone_read_index") else None
        if index is None and hasattr(ctx, "read_lane"):
            if self._lane is None:
                self._lane = ctx.read_lane()
            index = await self._lane.read_index(LANE_WAIT_S)
        if index is None and hasattr(ctx, "read_index_threadsafe"):
            read = ctx.read_index_threadsafe()
            done, _ = await asyncio.wait([asyncio.wrap_future(read)], timeout=max(0.0, deadline - loop.time()))
            if not done:
                ctx.forget_read(read)
                return STALE
            if read.exception() is None:
                index = read.result()
        if index is not None:
            applied = ctx.raft_applied_index
            while applied() < index and loop.time() < deadline:
                await asyncio.sleep(APPLY_POLL_S)
            return LINEARIZABLE if applied() >= index else STALE
        barrier = asyncio.run_coroutine_threadsafe(ctx.read_barrier(timeout=READ_WAIT_S), self._main)
        try:
            await asyncio.wrap_future(barrier)
        except (NoQuorum, NotLeader, ProposalDropped):
            return STALE
        return LINEARIZABLE


async def proxy(request: web.Request) -> web.StreamResponse:
    """Pass the request to the backend as it came and stream the answer back as it goes."""
    body = await request.read() if request.body_exists else None
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    url = URL("http://backend" + request.raw_path, encoded=True)
    try:
        upstream = await request.app[BACKEND].request(
            request.method, url, headers=headers, data=body, allow_redirects=False)
    except aiohttp.ClientConnectionError as exc:
        raise web.HTTPServiceUnavailable(
            text=f"this manager's API is not serving (its control plane is stopping or restarting: {exc}); "
                 "retry, or use another manager") from None
    async with upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for k, v in upstream.headers.items():
            if k.lower() not in HOP_BY_HOP:
                response.headers.add(k, v)
        if upstream.content_length is not None and "chunked" not in upstream.headers.get("Transfer-Encoding", ""):
            response.content_length = upstream.content_length
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientPayloadError) as exc:
            # the caller left (Ctrl-C on `logs -f`), or the backend's answer broke off: past
            # the headers there is no error to send; the connection is closed, not reused
            log.debug("%s %s: stream ended early: %r", request.method, request.path, exc)
            response.force_close()
    return response


def make_front_app(control: FrontControl, *, engine_version: str, hostname: str,
                   authorize: Authorize | None, max_body_bytes: int = MAX_BODY_BYTES) -> web.Application:
    """The front's app: `READ_ROUTES` here, the rest through `proxy` (the same middleware
    checks the version and authorizes every request first)."""
    app = bare_app(control, engine_version=engine_version, hostname=hostname, authorize=authorize,
                   max_body_bytes=max_body_bytes)
    app[routes_tasks.TASK_JSON] = RenderCache(lambda: control.store, routes_tasks.task_json)
    app[routes_nodes.NODE_JSON] = RenderCache(lambda: control.store, lambda n: n.to_api())
    app.on_cleanup.append(lambda _app: control.aclose())
    for path, handler in READ_ROUTES:
        add_route(app, "GET", path, handler)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


class ApiFront:
    """The front thread. `await start()` returns once every listener is bound (or raises what
    binding raised); `await cleanup()` stops them and the thread (the interface of aiohttp's
    runners, which the agent keeps in one list)."""

    def __init__(self, make_app: Callable[[], web.Application], backend: Path, *,
                 unix_path: str | None = None, tcp: tuple[str, int, ssl.SSLContext] | None = None) -> None:
        self._make_app = make_app
        self._backend = backend
        self._unix_path = unix_path
        self._tcp = tcp
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self.app: web.Application | None = None

    async def start(self) -> None:
        started: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="api-front", daemon=True)
        self._thread.start()
        try:
            await asyncio.wrap_future(started)
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            raise

    def _run(self, started: concurrent.futures.Future) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(started))
        except BaseException as exc:  # binding failed: the starter gets the error
            if not started.done():
                started.set_exception(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, started: concurrent.futures.Future) -> None:
        self._stopping = asyncio.Event()
        async with self._session() as session:
            self.app = app = self._make_app()
            app[BACKEND] = session
            runners = []
            try:
                if self._unix_path:
                    runners.append(await serve_unix(app, self._unix_path))
                if self._tcp is not None:
                    host, port, tls = self._tcp
                    runners.append(await serve_tcp(app, host, port, tls))
                started.set_result(None)
                await self._stopping.wait()
            finally:
                for r in runners:
                    await r.cleanup()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[aiohttp.ClientSession]:
        connector = aiohttp.UnixConnector(path=str(self._backend), limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                         skip_auto_headers=("User-Agent", "Accept-Encoding")) as session:
            yield session

    async def cleanup(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            loop.call_soon_threadsafe(self._stopping.set)
        except RuntimeError:  # its loop is already closed
            pass
        await asyncio.to_thread(thread.join)


def backend_socket(public_socket: str | None, state_dir: Path) -> Path:
    """Where the backend listens: beside the public socket (a root-only directory), else in the
    agent's state directory."""
    path = Path(public_socket + ".backend") if public_socket else Path(state_dir) / "api-backend.sock"
    if len(str(path).encode()) > 107:
        raise ValueError(f"the API's backend socket path {path} is too long for a unix socket "
                         "(107 bytes); use a shorter --api-socket or state directory")
    return path


__all__ = ["ApiFront", "FrontControl", "READ_ROUTES", "backend_socket", "make_front_app"]
