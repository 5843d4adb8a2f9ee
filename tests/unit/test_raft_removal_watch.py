"""`RemovalWatch` (manager/raftjoin.py): a manager whose Raft member was removed finds out,
whether it never learnt of its removal (it campaigns unheard: no leader) or it applied the
removal itself (it never campaigns again and keeps naming its old leader)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from swarmkit_py.manager.raftjoin import RemovalWatch


class Core:
    def __init__(self, me: int):
        self.removed = False
        self.conf = SimpleNamespace(voters=[me, 2, 3], learners=[])
        self.log = SimpleNamespace(last_index=lambda: 10)


def watch(me: int = 1):
    core = Core(me)
    raft = SimpleNamespace(core=core, leader_id=2, peers={})
    calls: list[float] = []
    w = RemovalWatch(SimpleNamespace(raft=raft, raft_id=me), None,
                     lambda: calls.append(asyncio.get_running_loop().time()))
    w.PERIOD, w.GRACE = 0.02, 0.2
    return w, core, raft, calls


async def test_a_member_that_applied_its_own_removal_is_told_after_the_grace():
    w, core, raft, calls = watch()
    w.start()
    try:
        await asyncio.sleep(0.3)
        assert calls == []  # a member of the group with a leader: nothing to do
        core.removed = True  # it applied the removal; it still names its old leader
        since = asyncio.get_running_loop().time()
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.02)
        assert len(calls) == 1 and calls[0] - since >= w.GRACE - 0.03
        await asyncio.sleep(0.2)
        assert len(calls) == 1  # once
    finally:
        await w.stop()


async def test_a_member_with_a_leader_and_not_removed_is_left_alone():
    w, core, raft, calls = watch()
    w.start()
    try:
        await asyncio.sleep(0.5)
        assert calls == []
    finally:
        await w.stop()
