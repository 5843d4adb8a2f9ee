"""Hole 3: anyone who can reach port 2377 could exhaust a manager's memory before any
authorization (issue 9).

The attacker has no certificate (port 2377 must accept such callers: joining nodes have
none). It sends, to the leader of a 3-manager cluster of real agent processes:
  1. one 4 MiB frame of 4 million empty lists (a request to ca.join), the finding's payload;
  2. a frame header announcing 64 MiB, followed by 8 MiB of it;
  3. a frame nested 100 000 lists deep;
  4. a Raft message (a method not open to strangers) and 200 requests pipelined at once;
  5. 300 connections that then sit idle.
The leader must keep its leadership (same term), its RSS must stay within 40 MB of where it
started (before the fix the first frame alone took it up by about 300 MB; then the connection
burst still cost about 0.27 MB per connection, asyncio's 256 KiB TLS read buffer allocated
before the handshake; with `rpc.tls_accept` a stranger's connection holds about 60 KB, see
bench/anon_conn_bench.py, and the whole attack adds about 8 MB), it must still answer `ca.root`
quickly while under attack, the connections beyond the
anonymous cap must be closed at once and the idle ones within the idle timeout, and a real
node must still be able to join afterwards.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time

import msgpack
import pytest

from swarmkit_py.rpc.framing import NOTIFY, REQUEST

from .attack import anonymous_context, found, rss_bytes, run

pytestmark = pytest.mark.slow

RSS_BOUND = 40 * 1024 * 1024
ANONYMOUS_CAP = 64
IDLE_TIMEOUT = 10.0


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def nested_empty_lists(total: int) -> bytes:
    """[REQUEST, 1, "ca.join", [[], [], ...]] of `total` bytes: one byte per Python list."""
    head = msgpack.packb([REQUEST, 1, "ca.join"])[1:]  # without the 3-element array header
    n = total - 1 - len(head) - 5
    return b"\x94" + head + b"\xdd" + struct.pack(">I", n) + b"\x90" * n


async def _send(port: int, data: bytes, *, read: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=anonymous_context())
    try:
        writer.write(data)
        await writer.drain()
        if read:
            async with asyncio.timeout(10):
                return await reader.read(1 << 16)
        await asyncio.sleep(0.5)
        return b""
    except (ConnectionError, OSError):
        return b""
    finally:
        writer.close()


async def _probe(port: int) -> float:
    """One anonymous ca.root round trip, timed (what a joining node does first)."""
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=anonymous_context())
    try:
        writer.write(frame(msgpack.packb([REQUEST, 1, "ca.root", {}])))
        await writer.drain()
        async with asyncio.timeout(10):
            header = await reader.readexactly(4)
            await reader.readexactly(struct.unpack(">I", header)[0])
    finally:
        writer.close()
    return time.monotonic() - t0


async def _attack(port: int) -> dict:
    out: dict = {}
    # 1. the finding: 4 MiB of nested empty lists
    await _send(port, frame(nested_empty_lists(4 * 1024 * 1024)))
    out["probe_after_lists"] = await _probe(port)
    # 2. a header announcing 64 MiB, then 8 MiB of it
    await _send(port, struct.pack(">I", 64 * 1024 * 1024 - 1) + b"\x00" * (8 * 1024 * 1024))
    # 3. 100 000 nested lists
    await _send(port, frame(b"\x91" * 100_000 + b"\xc0"))
    # 4. a Raft message from a stranger, and 200 pipelined requests
    raft = frame(msgpack.packb([NOTIFY, "raft.msg", [0] * 12]))
    answer = await _send(port, raft + frame(msgpack.packb([REQUEST, 2, "ca.root", {}])), read=True)
    out["raft_msg_answered"] = bool(answer)
    many = b"".join(frame(msgpack.packb([REQUEST, i, "ca.root", {}])) for i in range(200))
    await _send(port, many)
    out["probe_after_frames"] = await _probe(port)
    # 5. 300 connections, then silence
    conns = []
    for _ in range(300):
        try:
            conns.append(await asyncio.open_connection("127.0.0.1", port, ssl=anonymous_context()))
        except (ConnectionError, OSError):
            pass
    await asyncio.sleep(1.0)
    out["probe_under_connections"] = await _probe(port)

    async def still_open(reader) -> bool:
        try:
            async with asyncio.timeout(0.05):
                return await reader.read(1) != b""
        except TimeoutError:
            return True
        except (ConnectionError, OSError):
            return False

    out["open_after_1s"] = sum([await still_open(r) for r, _ in conns])
    await asyncio.sleep(IDLE_TIMEOUT + 3)
    out["open_after_idle"] = sum([await still_open(r) for r, _ in conns])
    for _, w in conns:
        w.close()
    return out


def test_anonymous_frames_do_not_exhaust_the_leader(cluster):
    c = cluster
    (m1, m2, m3), _ = found(c, managers=3)
    before = c.metrics(m1)
    assert before["swarmkit_raft_is_leader"] == 1
    pid = m1.proc.pid
    rss0 = rss_bytes(pid)
    peak = [rss0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], rss_bytes(pid))
            except (OSError, AssertionError):
                return
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run(_attack(m1.port))
    finally:
        stop.set()
        sampler.join()
    after = c.metrics(m1)
    growth = peak[0] - rss0
    print(f"leader RSS {rss0 / 2**20:.0f} MB -> peak {peak[0] / 2**20:.0f} MB; attack results {result}")

    assert after["swarmkit_raft_is_leader"] == 1 and after["swarmkit_raft_term"] == before["swarmkit_raft_term"], (
        f"the leader lost its leadership under the anonymous attack (term {before['swarmkit_raft_term']} -> "
        f"{after['swarmkit_raft_term']})"
    )
    assert growth < RSS_BOUND, f"leader RSS grew by {growth / 2**20:.0f} MB (bound {RSS_BOUND / 2**20:.0f} MB)"
    for probe in ("probe_after_lists", "probe_after_frames", "probe_under_connections"):
        assert result[probe] < 1.0, f"ca.root took {result[probe]:.2f}s ({probe})"
    assert not result["raft_msg_answered"], "a stranger's raft.msg must close the connection unanswered"
    assert result["open_after_1s"] <= ANONYMOUS_CAP, f"{result['open_after_1s']} anonymous connections kept open"
    assert result["open_after_idle"] == 0, f"{result['open_after_idle']} idle anonymous connections still open"

    # and a real node can still join
    token = c.docker(m1, "swarm", "join-token", "-q", "worker").stdout.strip()
    w = c.add("w-after")
    c.join(w, token, m1)
