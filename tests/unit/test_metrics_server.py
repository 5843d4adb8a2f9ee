"""The agent's /metrics listener (plain asyncio, no aiohttp: a worker's memory budget) answers
a scrape the way Prometheus and curl expect, and refuses everything else with a clear status."""

from __future__ import annotations

import asyncio
import types

from swarmkit_py.agent.metrics import MAX_HEAD, serve_metrics
from swarmkit_py.loopwatch import LoopWatch


def _agent():
    return types.SimpleNamespace(state=types.SimpleNamespace(node_id="n1", role="worker"), session=None,
                                 loopwatch=LoopWatch(), gc_policy=None, manager=None)


async def _request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)  # the server closes after one answer
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    return int(lines[0].split()[1]), headers, body


async def test_scrape_and_refusals():
    server = await serve_metrics(_agent(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        status, headers, body = await _request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert b'swarmkit_agent_info{node_id="n1",role="worker"} 1' in body
        assert b"# TYPE swarmkit_event_loop_stall_seconds histogram" in body
        # the same with a query string, as some scrapers send
        assert (await _request(port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"))[0] == 200
        assert (await _request(port, b"GET / HTTP/1.1\r\n\r\n"))[0] == 404
        status, _, body = await _request(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert status == 405 and b"GET" in body
        assert (await _request(port, b"hello\r\n\r\n"))[0] == 400
        assert (await _request(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n"))[0] == 431
    finally:
        server.close()
        await server.wait_closed()


def test_a_worker_agent_does_not_load_aiohttp_cryptography_or_the_manager():
    """Serving /metrics must not pull the manager half or aiohttp into a worker; nor must
    anything a worker-only agent imports pull in `cryptography` (ca/sslfacts.py), the Raft
    storage, or the Docker SDK with requests and urllib3 (swarmkit_py/engine.py), also once it has
    described its node to the engine (as it does at each session). paramiko is blocked as on
    hosts (the wheelhouse has runtime dependencies only): it is installed here for the deploy
    toolkit, and the Docker SDK imports it, and it `cryptography`, when it is there."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['paramiko'] = None\n"
            "import swarmkit_py.cli.main, swarmkit_py.agent.agent, swarmkit_py.agent.metrics\n"
            "from swarmkit_py.worker.describe import describe_node\n"
            "describe_node('unix:///nonexistent/docker.sock', timeout=1)\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('aiohttp', 'swarmkit_py.api', "
            "'swarmkit_py.manager.manager', 'swarmkit_py.raft.node', 'swarmkit_py.raft.storage', "
            "'cryptography', 'docker', 'requests', 'urllib3', 'charset_normalizer', 'idna')))\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
