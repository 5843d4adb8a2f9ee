"""ServerPolicy (issue 9, hole 3) on a plain loopback server, where every peer is anonymous:
strangers may call only the open methods, send only small frames and small containers, and
only so many of them may be connected at once."""

from __future__ import annotations

import asyncio

import pytest

from swarmkit_py.rpc import ANONYMOUS, RpcClient, RpcError, RpcServer, RpcUnavailable, ServerPolicy

LOOPBACK = "127.0.0.1"


@pytest.fixture
async def server():
    policy = ServerPolicy(limits_for=lambda peer: ANONYMOUS, anonymous_methods=frozenset({"open"}),
                          max_anonymous=2, anonymous_evict_after=0.2, anonymous_idle_timeout=0.6,
                          sweep_interval=0.1)
    srv = RpcServer(LOOPBACK, 0, policy=policy)
    srv.add_handler("open", lambda peer, params: "ok")
    srv.add_handler("closed", lambda peer, params: "secret")
    await srv.start()
    yield srv
    await srv.stop()


async def test_a_stranger_calling_a_closed_method_loses_its_connection(server):
    async with RpcClient(LOOPBACK, server.bound_port, timeout=5) as c:
        assert await c.call("open") == "ok"
        with pytest.raises(RpcUnavailable):
            await c.call("closed")
    assert server.refused["method_not_open"] == 1


async def test_refusing_answers_are_counted_by_the_policys_codes():
    policy = ServerPolicy(limits_for=lambda peer: ANONYMOUS, anonymous_methods=frozenset({"deny", "fail"}),
                          counted_codes={"permission_denied": "permission_denied"})
    srv = RpcServer(LOOPBACK, 0, policy=policy)

    def deny(peer, params):
        raise RpcError("permission_denied", "workers may not")

    def fail(peer, params):
        raise RpcError("invalid_argument", "not a refusal of the caller")

    srv.add_handler("deny", deny)
    srv.add_handler("fail", fail, inline=True)
    await srv.start()
    try:
        async with RpcClient(LOOPBACK, srv.bound_port, timeout=5) as c:
            for method in ("deny", "deny", "fail"):
                with pytest.raises(RpcError):
                    await c.call(method)
        assert srv.refused == {"permission_denied": 2}
    finally:
        await srv.stop()


@pytest.mark.parametrize(("params", "reason"), [
    (b"x" * (ANONYMOUS.max_frame + 1), "frame_too_large"),
    ([[]] * (ANONYMOUS.max_array_len + 1), "decode_limit"),
    ({str(i): 0 for i in range(ANONYMOUS.max_map_len + 1)}, "decode_limit"),
])
async def test_oversize_frames_and_containers_close_the_connection(server, params, reason):
    async with RpcClient(LOOPBACK, server.bound_port, timeout=5) as c:
        with pytest.raises(RpcUnavailable):
            await c.call("open", params)
    assert server.refused == {reason: 1}


async def test_strangers_are_capped_the_longest_silent_evicted_and_idle_ones_closed(server):
    clients = [RpcClient(LOOPBACK, server.bound_port, timeout=5) for _ in range(3)]
    try:
        for c in clients[:2]:
            assert await c.call("open") == "ok"
        assert await clients[2].call("open") == "ok"  # too soon to evict: refused...
    except RpcUnavailable:
        pass
    await asyncio.sleep(0.3)  # ...now the first two have been silent long enough
    assert await clients[2].call("open") == "ok"
    assert server.refused["anonymous_evicted"] >= 1
    assert len(server.connections) <= 2
    await asyncio.sleep(1.0)
    assert server.connections == frozenset(), "idle strangers must be closed"
    for c in clients:
        await c.close()

