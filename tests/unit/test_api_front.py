"""The API's front thread (`api/front.py`): reads answered while the manager's event loop is
held, the barrier still asked of that loop when a quorum must confirm, everything else passed
to the app on the loop, and the store's commit lock covering what a read sees."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import sys
import threading
import time

import pytest

from swarmkit_py.api import make_app, serve_unix
from swarmkit_py.api.front import ApiFront, FrontControl, make_front_app
from swarmkit_py.api.routes_events import EVENTS
from swarmkit_py.store import Transaction
from tests.unit.test_controlapi_fixtures import make_swarm

HOLD_LIMIT_S = 20.0
"""Longest the tests hold the manager's loop while they wait for an answer (a bound, not a
figure: an answer that needs the loop cannot come while it is held)."""


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def call(path: str, method: str, url: str, body: dict | None = None) -> tuple[int, dict, object]:
    conn = UnixHTTP(path)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, url, body=data, headers={"Content-Type": "application/json"} if data else {})
        r = conn.getresponse()
        raw = r.read()
        json_body = r.getheader("Content-Type", "").startswith("application/json")
        return r.status, dict(r.getheaders()), json.loads(raw) if raw and json_body else raw
    finally:
        conn.close()


class Lone:
    """The fake context of a lone voter: its commit index is the store's applied index."""

    def __init__(self, ctx, store) -> None:
        self._ctx, self._store = ctx, store
        self.barriers = 0

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def lone_read_index(self) -> int | None:
        return self._store.applied_index

    def raft_applied_index(self) -> int:
        return self._store.applied_index

    async def read_barrier(self, timeout=None) -> None:
        self.barriers += 1
        await self._ctx.read_barrier(timeout)


@pytest.fixture
async def front(tmp_path):
    """A swarm's API: the backend app on this (the "manager's") loop, the front on its thread."""
    made = []

    async def start(lone: bool):
        s = make_swarm(3, 2)
        ctx = Lone(s.ctx, s.store) if lone else s.ctx
        backend = tmp_path / "backend.sock"
        s.backend_app = make_app(s.control, engine_version="t", hostname="m1")
        runner = await serve_unix(s.backend_app, str(backend), mode=0o600)
        control = FrontControl(ctx, asyncio.get_running_loop())
        f = ApiFront(lambda: make_front_app(control, engine_version="t", hostname="m1", authorize=None),
                     backend, unix_path=str(tmp_path / "docker.sock"))
        await f.start()
        made.append((f, runner))
        return s, ctx, str(tmp_path / "docker.sock")

    yield start
    for f, runner in made:
        await f.cleanup()
        await runner.cleanup()


async def hold_loop_until(done: threading.Event) -> bool:
    """Hold this event loop (a blocking wait on it, as a long control-loop turn does) until
    `done` is set or HOLD_LIMIT_S passed; whether `done` was set while it was held."""
    await asyncio.sleep(0)
    return done.wait(HOLD_LIMIT_S)


def in_thread(fn) -> tuple[threading.Event, list]:
    done, out = threading.Event(), []

    def run():
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, out


async def test_a_lone_voters_reads_are_answered_while_the_managers_loop_is_held(front):
    s, ctx, sock = await front(lone=True)
    svc = await s.control.create_service({"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "nginx"}}})
    for url in ("/v1.41/services?status=true", "/v1.41/nodes", "/v1.41/tasks", f"/v1.41/services/{svc.id}",
                f"/v1.41/nodes/{s.managers[0]}", "/_ping"):
        done, out = in_thread(lambda url=url: call(sock, "GET", url))
        assert await hold_loop_until(done), f"GET {url}: no answer while the manager's loop was held"
        status, headers, body = out[0]
        assert status == 200, (url, body)
        assert headers["Api-Version"] == "1.41"
        if url != "/_ping":
            assert headers["X-Swarmkit-Read"] == "linearizable"
    assert ctx.barriers == 0
    # what the list said is the store's: the service with its replica status, every node
    _, _, services = call(sock, "GET", "/v1.41/services?status=true")
    assert [x["Spec"]["Name"] for x in services] == ["web"]
    assert services[0]["ServiceStatus"]["DesiredTasks"] == 1
    _, _, nodes = call(sock, "GET", "/v1.41/nodes")
    assert {n["ID"] for n in nodes} == set(s.managers + s.workers)


async def test_a_read_a_quorum_must_confirm_waits_for_the_barrier_on_the_managers_loop(front):
    s, _, sock = await front(lone=False)
    done, out = in_thread(lambda: call(sock, "GET", "/v1.41/services"))
    # the barrier is a coroutine on the held loop: no answer can come before it turns again
    assert not await _held_for(done, 1.0)
    assert await asyncio.to_thread(done.wait, HOLD_LIMIT_S)
    status, headers, body = out[0]
    assert status == 200 and body == [] and headers["X-Swarmkit-Read"] == "linearizable"


async def _held_for(done: threading.Event, seconds: float) -> bool:
    await asyncio.sleep(0)
    return done.wait(seconds)


async def test_writes_and_errors_go_through_to_the_app_on_the_managers_loop(front):
    s, _, sock = await front(lone=True)
    spec = {"Name": "api", "TaskTemplate": {"ContainerSpec": {"Image": "nginx"}},
            "Mode": {"Replicated": {"Replicas": 2}}}
    status, _, body = await asyncio.to_thread(call, sock, "POST", "/v1.41/services/create", spec)
    assert status == 201 and s.store.view().get_service(body["ID"]).spec.mode.replicated.replicas == 2
    status, headers, body = await asyncio.to_thread(call, sock, "POST", "/v1.41/services/create", spec)
    assert status == 409 and "already exists" in body["message"] and headers["Api-Version"] == "1.41"
    status, _, body = await asyncio.to_thread(call, sock, "GET", "/v1.41/services/nope")
    assert status == 404 and body["message"] == "service nope not found"
    status, _, body = await asyncio.to_thread(call, sock, "GET", "/v1.41/info")
    assert status == 200 and body["Swarm"]["NodeID"] == s.managers[0]
    status, _, body = await asyncio.to_thread(call, sock, "GET", "/v1.50/services")
    assert status == 400 and "too new" in body["message"]


async def test_an_answer_holds_whole_transactions(front):
    """A read on the front thread while the loop commits two-service transactions sees both
    services at the same generation, never one written and the other not yet."""
    s, _, sock = await front(lone=True)
    for name in ("a", "b"):
        await s.control.create_service({"Name": name, "TaskTemplate": {"ContainerSpec": {"Image": "nginx"}}})
    stop = threading.Event()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the interpreter over as often as it can: in any gap
    try:
        done, out = in_thread(lambda: _read_pairs(sock, stop))
        await _churn(s, done)
    finally:
        sys.setswitchinterval(interval)
    stop.set()
    await asyncio.to_thread(done.wait, HOLD_LIMIT_S)
    seen = out[0]
    assert not isinstance(seen, BaseException), seen
    assert seen["reads"] > 0 and seen["torn"] == 0, seen


async def _churn(s, done: threading.Event) -> None:
    n = 0
    while not done.is_set() and n < 400:
        n += 1
        view = s.store.view()
        tx = Transaction()
        for name in ("a", "b"):
            svc = view.lookup("service", name).clone()
            svc.spec.labels = {"gen": str(n)}
            tx.update(svc)
        await s.proposer.propose(tx)
        if n % 20 == 0:
            await asyncio.sleep(0.001)


def _read_pairs(sock: str, stop: threading.Event) -> dict:
    reads = torn = 0
    until = time.monotonic() + HOLD_LIMIT_S
    while not stop.is_set() and time.monotonic() < until:
        status, _, services = call(sock, "GET", "/v1.41/services")
        assert status == 200, services  # a read that met a half-written store errs (StaleView)
        gens = {x["Spec"].get("Labels", {}).get("gen") for x in services}
        reads += 1
        torn += len(gens) > 1
    return {"reads": reads, "torn": torn}


def test_apply_waits_for_a_reader_holding_the_commit_lock():
    s = make_swarm(1, 0)
    svc_tx = Transaction()
    view = s.store.view()
    node = view.get_node(s.managers[0]).clone()
    node.spec.labels = {"x": "1"}
    svc_tx.update(node)
    applied = threading.Event()
    with s.store.commit_lock:
        t = threading.Thread(target=lambda: (s.store.apply_tx(s.store.applied_index + 1, svc_tx), applied.set()))
        t.start()
        assert not applied.wait(0.3)  # its verdict is reached, its writes wait for the reader
        assert s.store.view().get_node(s.managers[0]).spec.labels == {}
    assert applied.wait(HOLD_LIMIT_S)
    t.join()
    assert s.store.view().get_node(s.managers[0]).spec.labels == {"x": "1"}


async def test_a_stream_is_passed_as_it_goes_and_closed_when_its_caller_leaves(front, caplog):
    """`docker events` through the front: each event arrives when it happens (not when the
    stream ends); when the caller goes away the backend's stream ends too, quietly."""
    s, _, sock = await front(lone=True)
    events = s.backend_app[EVENTS]
    conn = UnixHTTP(sock)
    await asyncio.to_thread(conn.request, "GET", "/v1.41/events?filters=%7B%22type%22%3A%5B%22service%22%5D%7D")
    r = await asyncio.to_thread(conn.getresponse)
    assert r.status == 200 and r.getheader("Api-Version") == "1.41"
    assert len(events._subs) == 1
    await s.control.create_service({"Name": "first", "TaskTemplate": {"ContainerSpec": {"Image": "nginx"}}})
    line = await asyncio.wait_for(asyncio.to_thread(r.readline), HOLD_LIMIT_S)  # the stream is open
    assert json.loads(line)["Actor"]["Attributes"]["name"] == "first"
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    # the next event finds the caller gone: the front ends its stream, then the backend its own
    for n in range(100):
        if not events._subs:
            break
        await s.control.create_service({"Name": f"after{n}", "TaskTemplate": {"ContainerSpec": {"Image": "nginx"}}})
        await asyncio.sleep(0.1)
    assert not events._subs, "the backend's events stream outlived its caller"
    assert not [x for x in caplog.records if x.levelname == "ERROR"], [x.getMessage() for x in caplog.records]
