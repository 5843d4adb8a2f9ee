"""A new one-member cluster (`swarmkit-py init`) leads as soon as its configuration is
applied, as swarmkit's raft node campaigns after bootstrapping: it used to wait out an
election timeout first, on the way of every bootstrap (the founder's API, then every join)."""

from __future__ import annotations

import asyncio
import time

from swarmkit_py.raft.config import RaftConfig
from swarmkit_py.raft.kv.cluster import free_ports
from swarmkit_py.raft.kv.fsm import KVStateMachine, encode_put
from swarmkit_py.raft.node import RaftNode
from swarmkit_py.raft.transport import Transport


def node(tmp_path, cfg: RaftConfig) -> RaftNode:
    port = free_ports(1)[0]
    return RaftNode(1, tmp_path, KVStateMachine(),
                    lambda on_message, **kw: Transport(1, "127.0.0.1", port, on_message, **kw),
                    cfg, addr=f"127.0.0.1:{port}")


async def leads_after(n: RaftNode, limit: float) -> float:
    t0 = time.monotonic()
    while not n.is_leader:
        assert time.monotonic() - t0 < limit, "no leader"
        await asyncio.sleep(0.005)
    return time.monotonic() - t0


async def test_a_founded_cluster_leads_without_waiting_out_an_election_timeout(tmp_path):
    # the shortest election timeout is 2 s here: leading sooner means it did not wait for it
    cfg = RaftConfig(tick_ms=100, heartbeat_ticks=2, election_ticks=20)
    n = node(tmp_path / "a", cfg)
    await n.start(bootstrap=True)
    try:
        assert await leads_after(n, 10) < 1.0
        assert n.term == 2  # one election: founded in term 1, led from term 2
        assert len(await n.propose_many([encode_put("k", b"v")])) == 1
    finally:
        await n.stop()
    # restarted from its files it is not founding anything: it waits for its election timeout
    again = node(tmp_path / "a", cfg)
    await again.start()
    try:
        assert await leads_after(again, 10) >= 1.9
    finally:
        await again.stop()
