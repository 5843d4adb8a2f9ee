"""Inline request handlers and pipelined calls: the KV write path's fast lane, same answers."""

from __future__ import annotations

import asyncio

import pytest

from swarmkit_py.rpc import RpcClient, RpcError, RpcServer

LOOPBACK = "127.0.0.1"


async def test_inline_handlers_answer_values_futures_and_errors():
    server = RpcServer(LOOPBACK, 0)
    later: list[asyncio.Future] = []

    def echo(peer, params):
        return params

    def deferred(peer, params):
        fut = asyncio.get_running_loop().create_future()
        later.append(fut)
        return fut

    def refuse(peer, params):
        raise RpcError("no_quorum", "not now")

    server.add_handler("t.echo", echo, inline=True)
    server.add_handler("t.deferred", deferred, inline=True)
    server.add_handler("t.refuse", refuse, inline=True)
    with pytest.raises(ValueError, match="plain function"):

        async def coro(peer, params):
            return 1

        server.add_handler("t.coro", coro, inline=True)
    await server.start()
    try:
        async with RpcClient(LOOPBACK, server.bound_port) as c:
            conn = await c.connect()
            assert await c.call("t.echo", {"a": 1}) == {"a": 1}
            calls = [conn.call_nowait("t.deferred", i) for i in range(100)]
            while len(later) < 100:
                await asyncio.sleep(0.01)
            for i, fut in enumerate(later):
                if i % 2:
                    fut.set_result(i * 10)
                else:
                    fut.set_exception(RpcError("busy", f"no {i}"))
            results = await asyncio.gather(*calls, return_exceptions=True)
            for i, r in enumerate(results):
                if i % 2:
                    assert r == i * 10
                else:
                    assert isinstance(r, RpcError) and (r.code, r.message) == ("busy", f"no {i}")
            with pytest.raises(RpcError, match="not now"):
                await c.call("t.refuse", None)
    finally:
        await server.stop()
