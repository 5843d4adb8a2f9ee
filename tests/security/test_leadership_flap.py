"""Hole 7b: leadership lost and regained before the manager's leadership loop runs must not
leave the control loops in the wrong state (issue 9).

The Raft callback only sets an event; the loop that starts and stops the leader-only control
loops (dispatcher, orchestrators, scheduler, CA role watch...) looks at the state when it gets
to run. If this manager lost its leadership and won it back meanwhile (term T -> T+2, another
leader may have committed in between), it saw "leader, loops running" and did nothing: the
loops went on with the old term's view and skipped the new term's read barrier. This drives
`Manager._leadership` with a scripted Raft member and checks that the loops are stopped and
started again, behind a read barrier taken in the new term.
"""

from __future__ import annotations

import asyncio

from swarmkit_py.manager.manager import Manager


class ScriptedRaft:
    def __init__(self):
        self.is_leader = False
        self.term = 1
        self.barriers: list[int] = []

    async def read_index(self, timeout=None):
        self.barriers.append(self.term)


def manager_with(raft, events):
    m = Manager.__new__(Manager)
    m._node_id = "n1"
    m.raft = raft
    m._leader_loops = []
    m._leading = False
    m._leading_term = 0
    m._leader_event = asyncio.Event()
    m._leader_listeners = []

    async def start():
        events.append(("start", raft.term))

    async def stop():
        events.append(("stop", raft.term))

    m.add_leader_loop("dispatcher", start, stop)
    return m


async def settle():
    for _ in range(20):
        await asyncio.sleep(0)


async def scenario():
    raft, events = ScriptedRaft(), []
    m = manager_with(raft, events)
    task = asyncio.create_task(m._leadership())
    try:
        raft.is_leader, raft.term = True, 2
        m._on_leader_change(1, 2)
        await settle()
        assert events == [("start", 2)] and raft.barriers == [2]

        # lost (term 3, someone else leads) and won back (term 4) before the loop runs
        raft.is_leader, raft.term = False, 3
        m._on_leader_change(7, 3)
        raft.is_leader, raft.term = True, 4
        m._on_leader_change(1, 4)
        await settle()
        return events, raft.barriers
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_leadership_lost_and_regained_restarts_the_control_loops():
    events, barriers = asyncio.run(scenario())
    assert events == [("start", 2), ("stop", 4), ("start", 4)], (
        f"control loops after losing and regaining leadership before the loop ran: {events}")
    assert barriers == [2, 4], f"the new term's loops must start behind a read barrier: {barriers}"
