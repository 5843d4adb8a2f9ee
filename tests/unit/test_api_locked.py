"""The locked manager's API (api/locked.py): only negotiation, /info and the unlock call."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from swarmkit_py.api.locked import make_locked_app
from swarmkit_py.raft.storage import (
    INVALID_UNLOCK_KEY_MESSAGE,
    SWARM_LOCKED_MESSAGE,
    InvalidUnlockKeyError,
    format_unlock_key,
    new_key,
    parse_unlock_key,
)

KEY = new_key()


@pytest.fixture
async def locked():
    given: list[bytes] = []

    async def unlock(text: str) -> None:
        key = parse_unlock_key(text)
        if key != KEY:
            raise InvalidUnlockKeyError()
        given.append(key)

    app = make_locked_app(unlock, node_id="n1", node_addr="10.0.0.1", engine_version="0.1.0", hostname="m1")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        client.given = given
        yield client


async def test_everything_but_unlock_says_locked(locked):
    assert (await locked.get("/_ping")).status == 200
    assert (await locked.get("/v1.41/version")).status == 200
    info = await (await locked.get("/v1.41/info")).json()
    assert info["Swarm"]["LocalNodeState"] == "locked" and info["Swarm"]["NodeID"] == "n1"
    for method, path in (("GET", "/v1.41/nodes"), ("GET", "/services"), ("POST", "/v1.41/swarm/update"),
                         ("GET", "/v1.41/swarm/unlockkey"), ("DELETE", "/v1.41/services/web")):
        r = await locked.request(method, path)
        assert r.status == 503, path
        assert (await r.json())["message"] == SWARM_LOCKED_MESSAGE
    assert (await locked.get("/v9.99/nodes")).status == 400  # version negotiation still applies


async def test_unlock_refuses_bad_and_wrong_keys_then_accepts(locked):
    r = await locked.post("/v1.41/swarm/unlock", json={"UnlockKey": "hello"})
    assert r.status == 400 and (await r.json())["message"] == "invalid key string"
    r = await locked.post("/v1.41/swarm/unlock", json={"UnlockKey": format_unlock_key(new_key())})
    body = await r.json()
    assert r.status == 401 and body == {"message": INVALID_UNLOCK_KEY_MESSAGE}
    r = await locked.post("/v1.41/swarm/unlock", json={"Key": "x"})
    assert r.status == 400
    assert locked.given == []
    r = await locked.post("/v1.41/swarm/unlock", json={"UnlockKey": format_unlock_key(KEY)})
    assert r.status == 200 and locked.given == [KEY]


async def test_a_manager_stopped_by_a_full_disk_says_so():
    """What a manager's API answers while its Raft member waits for disk space (agent.py):
    the reason and the remedy, on every cluster call; `docker info` shows Swarm: error."""
    from swarmkit_py.api.locked import make_unavailable_app
    from swarmkit_py.raft.errors import DiskFull

    message = str(DiskFull("/var/lib/swarmkit-py/raft", OSError(28, "No space left on device")))
    app = make_unavailable_app(message, node_id="n1", node_addr="10.0.0.1", engine_version="0.1.0", hostname="m1")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.get("/_ping")).status == 200
        info = await (await client.get("/v1.41/info")).json()
        assert info["Swarm"]["LocalNodeState"] == "error" and "disk is full" in info["Swarm"]["Error"]
        for method, path in (("GET", "/v1.41/services/web"), ("POST", "/v1.41/services/web/update?version=3"),
                             ("POST", "/v1.41/swarm/unlock")):
            r = await client.request(method, path)
            assert r.status == 503, path
            text = (await r.json())["message"]
            assert "disk is full" in text and "/var/lib/swarmkit-py/raft" in text and "Free space" in text
