"""Fuzzing the API's inputs: whatever a client sends, the answer is a JSON error with a
message and a 4xx status (the only 5xx allowed is dockerd's 500 "update out of sequence"),
or a success for input that happens to be valid; a refused request changes nothing.

The server runs once, in a thread with its own event loop, on 127.0.0.1; hypothesis drives it
through http.client so that paths, query strings and bodies reach it exactly as generated.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmkit_py.api import make_app, serve_tcp
from tests.unit.test_controlapi_fixtures import make_swarm

ALLOWED_500 = {"rpc error: code = Unknown desc = update out of sequence"}
BODY_LIMIT = 4096


class ServerThread:
    def __init__(self):
        self.swarm = make_swarm(3, 2)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self):
        asyncio.set_event_loop(self.loop)
        app = make_app(
            self.swarm.control, engine_version="fuzz", hostname="m1", max_body_bytes=BODY_LIMIT
        )
        self.runner = self.loop.run_until_complete(serve_tcp(app, "127.0.0.1", 0))
        self.port = self.runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()

    def start(self):
        self.thread.start()
        assert self.ready.wait(10), "API server did not start within 10 s"

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def snapshot(self):
        # Taken on the server's loop so it never races an apply.
        async def snap():
            return self.swarm.snapshot()

        return asyncio.run_coroutine_threadsafe(snap(), self.loop).result(10)

    def request(self, method: str, path: str, body: bytes | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()


@pytest.fixture
def server():
    """One fresh swarm per fuzz test (shared by that test's examples): valid writes one test
    happens to make (a demotion, say) must not change what another test asserts."""
    srv = ServerThread()
    srv.start()
    yield srv
    srv.stop()


def check(server: ServerThread, method: str, path: str, body: bytes | None = None):
    before = server.snapshot()
    status, headers, raw = server.request(method, path, body)
    assert headers.get("Api-Version") == "1.41", (method, path, status)
    if status < 400:
        return status
    assert headers.get("Content-Type", "").startswith("application/json"), (path, raw[:200])
    message = json.loads(raw)["message"]
    assert isinstance(message, str) and message, (path, raw[:200])
    if status == 501:  # an engine-local endpoint (volumes, images...): says where to go instead
        assert "point DOCKER_HOST at a node's own Docker engine" in message, (method, path, message)
    elif status >= 500:
        assert message in ALLOWED_500, (method, path, body and body[:200], status, message)
    else:
        assert 400 <= status < 500
    assert server.snapshot() == before, f"refused {method} {path} changed the store"
    return status


# -- strategies -----------------------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4)
    ),
    max_leaves=20,
)
spec_keys = st.sampled_from(
    [
        "Role",
        "role",
        "Availability",
        "AVAILABILITY",
        "Labels",
        "labels",
        "Name",
        "Spec",
        "Orchestration",
        "Raft",
        "Dispatcher",
        "CAConfig",
        "EncryptionConfig",
        "TaskDefaults",
    ]
)
spec_like = st.dictionaries(spec_keys | st.text(max_size=10), json_values, max_size=5)
bodies = st.one_of(
    spec_like.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(1, 300).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 300).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.just(b'{"Labels": {"x": "' + b"y" * (BODY_LIMIT * 2) + b'"}}'),
    st.just(b""),
)
versions = st.one_of(
    st.none(),
    st.integers(-5, 2**70).map(str),
    st.text(max_size=10),
)
bool_params = st.one_of(st.none(), st.sampled_from(["1", "0", "true", "False", "no", "x", ""]))
prefixes = st.sampled_from(["", "/v1.41", "/v1.24", "/v1.44", "/v0.1", "/v1.41.9", "/v9"])


def refs(server_swarm):
    known = server_swarm.managers + server_swarm.workers
    return st.one_of(
        st.sampled_from(known + ["m1", "w1", "w"]),
        st.sampled_from(known).map(lambda i: i[:3]),
        st.text(min_size=1, max_size=30),
    )


def with_query(path: str, **params) -> str:
    q = {k: v for k, v in params.items() if v is not None}
    return path + ("?" + urlencode(q) if q else "")


FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(data=st.data())
def test_fuzz_node_update(server, data):
    ref = data.draw(refs(server.swarm))
    path = with_query(
        data.draw(prefixes) + f"/nodes/{quote(ref, safe='')}/update",
        version=data.draw(versions),
    )
    check(server, "POST", path, data.draw(bodies))


@FUZZ
@given(data=st.data())
def test_fuzz_swarm_update(server, data):
    path = with_query(
        data.draw(prefixes) + "/swarm/update",
        version=data.draw(versions),
        rotateWorkerToken=data.draw(bool_params),
        rotateManagerToken=data.draw(bool_params),
    )
    check(server, "POST", path, data.draw(bodies))


@FUZZ
@given(data=st.data())
def test_fuzz_reads_and_filters(server, data):
    filters = data.draw(
        st.one_of(
            st.text(max_size=40),
            json_values.map(json.dumps),
            st.dictionaries(
                st.sampled_from(["id", "name", "role", "label", "membership", "bogus"])
                | st.text(max_size=8),
                st.lists(st.text(max_size=8), max_size=3)
                | st.dictionaries(st.text(max_size=8), st.booleans() | json_scalars, max_size=3),
                max_size=3,
            ).map(json.dumps),
        )
    )
    prefix = data.draw(prefixes)
    check(server, "GET", with_query(prefix + "/nodes", filters=filters))
    ref = data.draw(refs(server.swarm))
    check(server, "GET", f"{prefix}/nodes/{quote(ref, safe='')}")
    check(
        server,
        "GET",
        prefix
        + data.draw(
            st.sampled_from(["/swarm", "/info", "/version", "/_ping", "/distribution/a/b/json"])
        ),
    )


@FUZZ
@given(data=st.data())
def test_fuzz_node_remove_and_unknown_routes(server, data):
    ref = data.draw(st.text(min_size=1, max_size=30))
    known = server.swarm.managers + server.swarm.workers
    if any(k.startswith(ref) for k in known) or ref in ("m1", "m2", "m3", "w1", "w2"):
        ref = "zz" + ref  # removing real nodes is not the point here; refusals are
    path = with_query(
        data.draw(prefixes) + f"/nodes/{quote(ref, safe='')}", force=data.draw(bool_params)
    )
    assert check(server, "DELETE", path) >= 400
    # Managers are always refused (demote first), whatever the force flag says.
    m = data.draw(st.sampled_from(server.swarm.managers))
    assert check(server, "DELETE", with_query(f"/nodes/{m}", force=data.draw(bool_params))) == 400
    # "zz": never a real route. Hypothesis also draws the string literals of the code under
    # test, and a bare "events" opened the event stream, which never ends (the suite hung).
    junk = "zz" + data.draw(st.text(min_size=1, max_size=30))
    check(
        server,
        data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"])),
        "/" + quote(junk, safe="/"),
    )
