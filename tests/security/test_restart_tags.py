"""A request is answered with its own entry's result, even across a restart (issue 9, hole 1).

Proposals are tagged (member, tag) so the member that proposed a write recognises it when it
applies. Tags used to count from 1 in every process: after a restart, an entry the previous
process proposed (committed, not yet applied here) carried the same tag as the new process's
first request, which then completed with the old entry's result.

Real processes, SIGKILL, real disks: the KV members run the same Raft driver as a manager.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from swarmkit_py.raft.kv.cluster import LocalCluster
from swarmkit_py.rpc import RpcError

pytestmark = pytest.mark.slow


async def _put_retrying(c: LocalCluster, node: int, key: str, value: bytes, within: float = 30.0) -> int:
    """The member answers no_quorum until a leader is elected; a request that fails that way
    never took a tag, so retrying keeps the scenario intact."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await c.put(node, key, value, timeout=10.0)
        except RpcError as e:
            if e.code not in ("no_quorum", "unavailable") or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_first_request_after_a_restart_gets_its_own_result(tmp_path):
    c = LocalCluster(3, tmp_path)
    try:
        await c.start()
        leader = await c.wait_leader()
        member = next(n for n in c.members if n != leader)
        old_index = await c.put(member, "old", b"before the restart")  # the result is the entry's index
        # Idle now: the commit index moved without new entries, so no member wrote it (the
        # driver's MustSync rule). A crash of everyone leaves the entry committed, unapplied.
        for n in c.members:
            await c.kill(n)
        await c.restart(member)
        st = await c.status(member)
        assert st["applied"] < old_index <= st["last_index"], f"precondition: entry {old_index} must be unapplied: {st}"

        new = asyncio.create_task(_put_retrying(c, member, "new", b"after the restart"))
        for n in c.members:
            if n != member:
                await c.restart(n)
        new_index = await new
        assert new_index > old_index, (
            f"the new write was answered with entry {new_index}, the old write's ({old_index})"
        )
        assert await c.get(member, "new") == b"after the restart"
        assert await c.get(member, "old") == b"before the restart"
    finally:
        await c.stop()
