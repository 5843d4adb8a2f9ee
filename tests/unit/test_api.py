"""The Docker Engine API subset over HTTP: every endpoint, the version prefix, errors and the
authorization hook, against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import stat

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from swarmkit_py.api import make_app, serve_tcp, serve_unix
from swarmkit_py.manager.controlapi import ControlAPI
from swarmkit_py.raft.errors import NoQuorum, Stopped
from tests.unit.test_controlapi_fixtures import make_swarm


@pytest.fixture
async def api():
    s = make_swarm(3, 2)
    app = make_app(s.control, engine_version="0.1.0-test", hostname="m1")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield s, client


async def error_of(resp) -> tuple[int, str]:
    assert resp.content_type == "application/json", await resp.text()
    assert resp.headers["Api-Version"] == "1.41"
    body = await resp.json()
    return resp.status, body["message"]


# -- system ---------------------------------------------------------------------------------


async def test_ping_head_and_get(api):
    _, c = api
    for method in ("HEAD", "GET"):
        for path in ("/_ping", "/v1.41/_ping"):
            r = await c.request(method, path)
            assert r.status == 200
            assert r.headers["Api-Version"] == "1.41"
            assert r.headers["Ostype"] == "linux"
            assert r.headers["Docker-Experimental"] == "false"
            assert r.headers["Cache-Control"].startswith("no-cache")
            if method == "GET":
                assert await r.text() == "OK"


async def test_version(api):
    _, c = api
    for path in ("/version", "/v1.24/version", "/v1.41/version"):
        body = await (await c.get(path)).json()
        assert body["ApiVersion"] == "1.41" and body["MinAPIVersion"] == "1.24"
        assert body["Version"] == "0.1.0-test"
        assert body["Components"][0]["Name"] == "Engine"


async def test_client_version_out_of_range(api):
    _, c = api
    status, msg = await error_of(await c.get("/v1.44/nodes"))
    assert status == 400
    assert msg == "client version 1.44 is too new. Maximum supported API version is 1.41"
    status, msg = await error_of(await c.get("/v1.12/version"))
    assert status == 400 and "too old. Minimum supported API version is 1.24" in msg
    # Even the negotiation endpoint carries the header on an error.
    r = await c.get("/v1.50/_ping")
    assert r.status == 400 and r.headers["Api-Version"] == "1.41"


async def test_info(api):
    s, c = api
    body = await (await c.get("/v1.41/info")).json()
    assert body["Name"] == "m1" and body["ServerVersion"] == "0.1.0-test"
    swarm = body["Swarm"]
    assert swarm["NodeID"] == s.managers[0]
    assert swarm["ControlAvailable"] is True
    assert swarm["Nodes"] == 5 and swarm["Managers"] == 3
    assert swarm["Cluster"]["ID"] == s.cluster_id
    assert "JoinTokens" not in swarm["Cluster"]


async def test_distribution_is_404(api):
    _, c = api
    status, msg = await error_of(await c.get("/v1.41/distribution/local/busybox:1/json"))
    assert status == 404 and "local/busybox:1" in msg


async def test_unknown_path_and_method(api):
    _, c = api
    status, msg = await error_of(await c.get("/v1.41/nope"))
    assert status == 404 and msg.startswith("page not found: /nope is not part of")
    status, _ = await error_of(await c.put("/v1.41/nodes"))
    assert status == 405


# -- nodes ----------------------------------------------------------------------------------


async def test_node_list_shapes_and_manager_status(api):
    s, c = api
    s.ctx.set_member(s.managers[2], reachable=False)
    nodes = await (await c.get("/v1.41/nodes")).json()
    by_id = {n["ID"]: n for n in nodes}
    assert by_id[s.managers[0]]["ManagerStatus"] == {
        "Leader": True,
        "Reachability": "reachable",
        "Addr": "127.0.0.1:2377",
    }
    assert by_id[s.managers[2]]["ManagerStatus"]["Reachability"] == "unreachable"
    for w in s.workers:
        assert "ManagerStatus" not in by_id[w]
    n = by_id[s.workers[0]]
    assert n["Spec"] == {"Labels": {}, "Role": "worker", "Availability": "active"}
    assert n["Status"] == {"State": "ready", "Addr": "127.0.1.1"}
    assert n["Version"]["Index"] >= 1
    assert n["CreatedAt"].endswith("Z")
    # Internal fields never reach the API.
    assert "Role" not in n and "RaftID" not in n and "Certificate" not in n


@pytest.mark.parametrize(
    "filters, expect",
    [
        ({"role": {"manager": True}}, "managers"),
        ({"role": ["worker"]}, "workers"),  # the SDK's list form
        ({"name": {"w": True}}, "workers"),
        ({"membership": {"accepted": True}}, "all"),
        ({}, "all"),
    ],
)
async def test_node_list_filters(api, filters, expect):
    s, c = api
    r = await c.get("/v1.41/nodes", params={"filters": json.dumps(filters)})
    ids = {n["ID"] for n in await r.json()}
    want = {"managers": s.managers, "workers": s.workers, "all": s.managers + s.workers}[expect]
    assert ids == set(want)


@pytest.mark.parametrize(
    "raw, message",
    [
        ('{"bogus":{"x":true}}', "Invalid filter 'bogus'"),
        ('{"role":{"boss":true}}', "Invalid role filter: 'boss'"),
        ("[1,2]", "invalid filters"),
        ("{not json", "invalid filters"),
        ('{"role":"manager"}', "invalid filter 'role'"),
        ('{"role":{"manager":"yes"}}', "map values must be booleans"),
        ('{"role":[1]}', "list values must be strings"),
    ],
)
async def test_node_list_bad_filters(api, raw, message):
    _, c = api
    status, msg = await error_of(await c.get("/v1.41/nodes", params={"filters": raw}))
    assert status == 400 and message in msg


async def test_node_inspect(api):
    s, c = api
    for ref in (s.workers[0], "w1", s.workers[0][:8]):
        body = await (await c.get(f"/v1.41/nodes/{ref}")).json()
        assert body["ID"] == s.workers[0]
    status, msg = await error_of(await c.get("/v1.41/nodes/nosuchnode"))
    assert (status, msg) == (404, "node nosuchnode not found")


async def test_node_update_promote_and_errors(api):
    s, c = api
    w1 = s.workers[0]
    node = await (await c.get(f"/nodes/{w1}")).json()
    v = node["Version"]["Index"]
    spec = dict(node["Spec"], Role="manager", Labels={"a": "b"})
    r = await c.post(f"/v1.41/nodes/{w1}/update", params={"version": v}, json=spec)
    assert r.status == 200 and await r.read() == b""
    assert s.node(w1).spec.role == "manager" and s.node(w1).spec.labels == {"a": "b"}
    # The same version again is stale.
    status, msg = await error_of(
        await c.post(f"/v1.41/nodes/{w1}/update", params={"version": v}, json=spec)
    )
    assert (status, msg) == (500, "rpc error: code = Unknown desc = update out of sequence")


async def test_node_update_missing_and_bad_version(api):
    s, c = api
    w1 = s.workers[0]
    status, msg = await error_of(await c.post(f"/v1.41/nodes/{w1}/update", json={}))
    assert status == 400
    assert msg == "invalid node version '': strconv.ParseUint: parsing \"\": invalid syntax"
    status, msg = await error_of(await c.post(f"/v1.41/nodes/{w1}/update?version=-1", json={}))
    assert status == 400 and "invalid node version '-1'" in msg
    status, msg = await error_of(await c.post(f"/v1.41/nodes/{w1}/update?version={2**64}", json={}))
    assert status == 400 and "value out of range" in msg


async def test_node_demote_last_manager_message():
    s = make_swarm(1, 1)
    app = make_app(s.control, engine_version="t", hostname="m1")
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        m1 = s.managers[0]
        v = s.node(m1).version.index
        status, msg = await error_of(
            await c.post(
                f"/v1.41/nodes/{m1}/update?version={v}",
                json={"Role": "worker", "Availability": "active", "Labels": {}},
            )
        )
        assert status == 400
        assert msg == (
            "rpc error: code = FailedPrecondition desc = "
            "attempting to demote the last manager of the swarm"
        )


async def test_node_demote_quorum_message(api):
    s, c = api
    s.ctx.set_member(s.managers[2], reachable=False)
    m2 = s.managers[1]
    v = s.node(m2).version.index
    status, msg = await error_of(
        await c.post(f"/nodes/{m2}/update?version={v}", json={"Role": "worker"})
    )
    assert status == 400 and msg.endswith(
        "can't remove member from the raft: this would result in a loss of quorum"
    )


async def test_node_rm(api):
    s, c = api
    status, msg = await error_of(await c.delete("/v1.41/nodes/w1"))
    assert status == 400 and msg.endswith("is not down and can't be removed")
    status, msg = await error_of(await c.delete("/v1.41/nodes/m2", params={"force": "1"}))
    assert status == 400 and "must be demoted to worker before removal" in msg
    r = await c.delete("/v1.41/nodes/w1", params={"force": "1"})
    assert r.status == 200
    assert s.node(s.workers[0]) is None
    status, _ = await error_of(await c.delete("/v1.41/nodes/w1?force=1"))
    assert status == 404


# -- swarm ----------------------------------------------------------------------------------


async def test_swarm_inspect(api):
    s, c = api
    body = await (await c.get("/v1.41/swarm")).json()
    assert body["ID"] == s.cluster_id
    assert body["JoinTokens"]["Worker"].startswith("SWMTKN-1-")
    assert body["TLSInfo"]["CertIssuerSubject"]
    assert "RootCA" not in body
    assert body["Spec"]["Name"] == "default"


async def test_swarm_update_and_rotation(api):
    s, c = api
    body = await (await c.get("/swarm")).json()
    spec = body["Spec"]
    spec["Orchestration"]["TaskHistoryRetentionLimit"] = 3
    r = await c.post(
        "/v1.41/swarm/update",
        params={
            "version": body["Version"]["Index"],
            "rotateWorkerToken": "true",
            "rotateManagerToken": "false",
            "rotateManagerUnlockKey": "false",
        },
        json=spec,
    )
    assert r.status == 200, await r.text()
    after = await (await c.get("/swarm")).json()
    assert after["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"] == 3
    assert after["JoinTokens"]["Worker"] != body["JoinTokens"]["Worker"]
    assert after["JoinTokens"]["Manager"] == body["JoinTokens"]["Manager"]
    status, msg = await error_of(
        await c.post("/swarm/update", params={"version": body["Version"]["Index"]}, json=spec)
    )
    assert (status, msg) == (500, "rpc error: code = Unknown desc = update out of sequence")
    status, msg = await error_of(await c.post("/swarm/update", json=spec))
    assert status == 400 and msg.startswith("invalid swarm version ''")


async def test_swarm_init_join_leave(api):
    _, c = api
    for path in ("/v1.41/swarm/init", "/v1.41/swarm/join"):
        status, msg = await error_of(await c.post(path, json={}))
        assert status == 503 and msg.startswith("This node is already part of a swarm.")
    status, msg = await error_of(await c.post("/v1.41/swarm/leave?force=1"))
    assert status == 503 and "swarmkit-py leave" in msg


# -- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "got EOF while reading request body"),
        (b"{", "invalid JSON in request body"),
        (b"[1]", "expected a JSON object, got array"),
        (b'{"Role": NaN}', "NaN is not valid JSON"),
        (b"\xff\xfe", "invalid JSON in request body"),
        (b"[" * 100 + b"]" * 100, "nested"),
        (b'{"Junk": -9223372036854775809}', "out of the 64-bit integer range"),
        (b'{"Labels": {}, "x": 1e999}', "out of range"),
    ],
)
async def test_bad_bodies(api, body, message):
    s, c = api
    before = s.snapshot()
    w1 = s.workers[0]
    status, msg = await error_of(await c.post(f"/v1.41/nodes/{w1}/update?version=1", data=body))
    assert status == 400 and message in msg
    assert s.snapshot() == before


async def test_huge_body_is_413():
    s = make_swarm(1, 1)
    app = make_app(s.control, engine_version="t", hostname="m1", max_body_bytes=1024)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        big = json.dumps({"Labels": {"x": "y" * 4096}}).encode()
        status, msg = await error_of(
            await c.post(f"/v1.41/nodes/{s.workers[0]}/update?version=1", data=big)
        )
        assert status == 413 and "too large" in msg


# -- raft errors ----------------------------------------------------------------------------


class FailingProposer:
    def __init__(self, store, exc):
        self.store = store
        self.exc = exc

    async def propose(self, tx, timeout=None):
        raise self.exc


@pytest.mark.parametrize(
    "exc, status, fragment",
    [
        (NoQuorum(), 503, "The swarm does not have a leader"),
        (TimeoutError(), 503, "The swarm does not have a leader"),
        (Stopped(), 503, "Worker nodes can't be used"),
    ],
)
async def test_raft_errors_are_503(exc, status, fragment):
    s = make_swarm(3, 1)
    s.ctx.proposer = FailingProposer(s.store, exc)
    app = make_app(ControlAPI(s.ctx), engine_version="t", hostname="m1")
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        w1 = s.workers[0]
        got_status, msg = await error_of(
            await c.post(f"/nodes/{w1}/update?version=1", json={"Availability": "drain"})
        )
        assert got_status == status and fragment in msg
        # Reads are served from the local store regardless.
        assert (await c.get("/nodes")).status == 200


# -- authorization --------------------------------------------------------------------------


async def test_authorize_hook_guards_everything_but_ping():
    s = make_swarm(1, 1)
    seen = []

    async def authorize(request: web.Request) -> None:
        seen.append(request.path)
        if request.headers.get("X-Role") != "client":
            raise PermissionError("worker certificates cannot use the manager API")

    app = make_app(s.control, engine_version="t", hostname="m1", authorize=authorize)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        assert (await c.head("/_ping")).status == 200
        assert (await c.get("/v1.41/_ping")).status == 200
        for path in ("/version", "/v1.41/info", "/v1.41/nodes", "/v1.41/swarm"):
            status, msg = await error_of(await c.get(path))
            assert status == 403 and "worker certificates" in msg
        ok = await c.get("/v1.41/nodes", headers={"X-Role": "client"})
        assert ok.status == 200
    assert "/_ping" not in seen


async def test_authorize_hook_may_be_sync_and_raise_http_forbidden():
    s = make_swarm(1, 0)

    def authorize(request):
        raise web.HTTPForbidden(text="no certificate")

    app = make_app(s.control, engine_version="t", hostname="m1", authorize=authorize)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        status, msg = await error_of(await c.get("/swarm"))
        assert (status, msg) == (403, "no certificate")


# -- serving --------------------------------------------------------------------------------


async def test_serve_tcp_and_unix(tmp_path):
    s = make_swarm(1, 0)
    runner = await serve_tcp(make_app(s.control, engine_version="t", hostname="m1"), "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{host}:{port}/_ping") as r:
                assert r.status == 200
    finally:
        await runner.cleanup()

    path = str(tmp_path / "api.sock")
    with open(path, "w"):
        pass
    with pytest.raises(FileExistsError):
        await serve_unix(make_app(s.control, engine_version="t", hostname="m1"), path)
    os.unlink(path)
    runner = await serve_unix(make_app(s.control, engine_version="t", hostname="m1"), path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        conn = aiohttp.UnixConnector(path=path)
        async with aiohttp.ClientSession(connector=conn) as http:
            async with http.get("http://docker/v1.41/swarm") as r:
                assert r.status == 200
    finally:
        await runner.cleanup()
    # A stale socket from a crashed agent is replaced.
    runner = await serve_unix(make_app(s.control, engine_version="t", hostname="m1"), path)
    await runner.cleanup()


async def test_one_app_on_two_listeners(tmp_path):
    """The agent serves one app on its unix socket and on TCP; stopping one leaves the other."""
    s = make_swarm(1, 0)
    app = make_app(s.control, engine_version="t", hostname="m1")
    path = str(tmp_path / "api.sock")
    unix = await serve_unix(app, path)
    tcp = await serve_tcp(app, "127.0.0.1", 0)
    port = tcp.addresses[0][1]
    try:
        conn = aiohttp.UnixConnector(path=path)
        async with aiohttp.ClientSession(connector=conn) as http:
            async with http.get("http://docker/_ping") as r:
                assert r.status == 200
        await unix.cleanup()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/v1.41/nodes") as r:
                assert r.status == 200
    finally:
        await tcp.cleanup()


async def test_engine_local_endpoints_say_where_to_go_instead_of_page_not_found(api):
    _, client = api
    r = await client.get("/v1.41/containers/json")
    assert r.status == 501
    body = await r.json()
    assert "containers (docker ps" in body["message"] and "DOCKER_HOST" in body["message"]
    assert r.headers["Api-Version"]
    r = await client.get("/v1.41/system/df")
    assert r.status == 501 and "docker system df" in (await r.json())["message"]
    r = await client.get("/v1.41/nosuch/thing")
    assert r.status == 404 and "/nosuch/thing" in (await r.json())["message"]


async def test_reads_say_whether_a_quorum_confirmed_them(api):
    """`X-Swarmkit-Read`: linearizable when the read barrier passed; stale when no quorum
    confirmed it in time and the local copy answered (reads keep working without quorum);
    absent on answers that read nothing from the store. Reset per request: a keep-alive
    connection serves its requests in one task."""
    s, client = api
    r = await client.get("/v1.41/services")
    assert r.status == 200 and r.headers["X-Swarmkit-Read"] == "linearizable"

    async def no_quorum(timeout=None):
        raise NoQuorum("no quorum")

    s.ctx.read_barrier = no_quorum
    r = await client.get("/v1.41/nodes")
    assert r.status == 200 and len(await r.json()) == 5
    assert r.headers["X-Swarmkit-Read"] == "stale"
    del s.ctx.read_barrier  # the fixture's own again
    r = await client.get("/v1.41/services")
    assert r.headers["X-Swarmkit-Read"] == "linearizable"
    r = await client.get("/_ping")
    assert "X-Swarmkit-Read" not in r.headers
