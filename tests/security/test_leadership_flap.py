"""Hole 7b: leadership lost and regained before the manager's leadership loop runs must not
leave the control loops in the wrong state (issue 9).

The Raft callback only sets an event; the loop that starts and stops the leader-only control
loops (dispatcher, orchestrators, scheduler, CA role watch...) looks at the state when it gets
to run. If this manager lost its leadership and won it back meanwhile (term T -> T+2, another
leader may have committed in between), it saw "leader, loops running" and did nothing: the
loops went on with the old term's view and skipped the new term's read barrier. This drives
`LeaderLoops` (what the manager runs) with a scripted Raft member and checks that the loops are stopped and
started again, behind a read barrier taken in the new term.
"""

from __future__ import annotations

import asyncio

from swarmkit_py.manager.leadership import LeaderLoops


class ScriptedRaft:
    def __init__(self):
        self.is_leader = False
        self.term = 1
        self.barriers: list[int] = []

    async def read_index(self, timeout=None):
        self.barriers.append(self.term)


class Recorder:
    """A leader-only loop that records when it is started and stopped, and in which term."""

    def __init__(self, raft, events):
        self.raft, self.events = raft, events

    def start(self):
        self.events.append(("start", self.raft.term))

    async def stop(self):
        self.events.append(("stop", self.raft.term))


def loops_with(raft, events):
    loops = LeaderLoops(raft, "n1")
    loops.add("dispatcher", Recorder(raft, events))
    return loops


async def settle():
    for _ in range(20):
        await asyncio.sleep(0)


async def scenario():
    raft, events = ScriptedRaft(), []
    m = loops_with(raft, events)
    m.start()
    try:
        raft.is_leader, raft.term = True, 2
        m.leader_changed()
        await settle()
        assert events == [("start", 2)] and raft.barriers == [2]

        # lost (term 3, someone else leads) and won back (term 4) before the loop runs
        raft.is_leader, raft.term = False, 3
        m.leader_changed()
        raft.is_leader, raft.term = True, 4
        m.leader_changed()
        await settle()
        return list(events), list(raft.barriers)
    finally:
        await m.stop()


def test_leadership_lost_and_regained_restarts_the_control_loops():
    events, barriers = asyncio.run(scenario())
    assert events == [("start", 2), ("stop", 4), ("start", 4)], (
        f"control loops after losing and regaining leadership before the loop ran: {events}")
    assert barriers == [2, 4], f"the new term's loops must start behind a read barrier: {barriers}"
