"""The read lane (raft/readlane.py): a leader's reads confirmed by a majority's terms, asked on
the caller's loop, while the leader's own loop is held; and never for a leader that a later
term has replaced. A follower's reads confirmed by its leader's commit index and the terms,
while the follower's own loop is held; and never by a member that no longer leads. Real
transports on loopback, real fsyncs; member 1 runs on an event loop of its own (a thread), so
holding it holds nothing else, as a busy manager's loop does not hold its API's front thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import asynccontextmanager

from swarmkit_py.raft.kv.fsm import encode_put
from swarmkit_py.raft.readlane import ReadLane
from swarmkit_py.raft.transport import COMMIT_METHOD, TERM_METHOD, Transport
from swarmkit_py.rpc import open_connection
from tests.integration.test_raft_driver import CFG, Members, wait_for

PATIENT = CFG.model_copy(update={"election_ticks": 150})
"""Followers that wait 3 s before an election: a held leader stays the leader meanwhile."""


class LoopThread:
    """An event loop on a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="member-1", daemon=True)
        self.thread.start()

    async def run(self, coro):
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def hold(self, release: threading.Event, seconds: float) -> None:
        """Hold the loop (one callback that does not return) until `release` or `seconds`."""
        self.loop.call_soon_threadsafe(release.wait, seconds)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def found_with_member_1_on_its_own_loop(ms: Members, lt: LoopThread, leader: int = 1):
    """Members 2 and 3 on the test's loop, member 1 on `lt`'s; member `leader` made the leader,
    and member 1 given its read view (as leader, or as its follower)."""
    founders = dict(ms.addrs)
    await lt.run(ms.start(1, founders))
    for nid in (2, 3):
        await ms.start(nid, founders)
    await wait_for(lambda: any(n.is_leader for n in ms.nodes.values()), "a leader")
    ld = next(n for n in ms.nodes.values() if n.is_leader)
    if ld.id != leader:
        await (lt.run(ld.transfer_leadership(leader, timeout=10)) if ld.id == 1
               else ld.transfer_leadership(leader, timeout=10))
    one, new = ms.nodes[1], ms.nodes[leader]
    await wait_for(lambda: new.is_leader and new.read_view is not None
                   and one.read_view is not None and one.read_view.leader == leader,
                   f"member {leader} to lead, with member 1's read view naming it")
    return one


class Held:
    """Three members, member 1 leading on a loop of its own (`lt`), and a read lane of its."""

    def __init__(self, tmp_path, cfg) -> None:
        self.ms, self.lt = Members(tmp_path, 3, cfg), LoopThread()
        self.release = threading.Event()
        self.leader = self.lane = None

    def hold(self, seconds: float) -> None:
        """Hold the leader's loop until the test ends (or `seconds`)."""
        self.lt.hold(self.release, seconds)


@asynccontextmanager
async def held_leader(tmp_path, cfg=CFG, leader: int = 1):
    """`h.leader` is member 1 (on `h.lt`), the leader unless `leader` names another; `h.lane`
    its read lane."""
    h = Held(tmp_path, cfg)
    try:
        h.leader = await found_with_member_1_on_its_own_loop(h.ms, h.lt, leader)
        h.lane = ReadLane(h.leader)
        yield h
    finally:
        h.release.set()
        if h.lane is not None:
            await h.lane.aclose()
        for nid, n in h.ms.nodes.items():
            await (h.lt.run(n.stop()) if nid == 1 else n.stop())
        h.lt.close()


async def test_the_lane_confirms_a_read_while_the_leaders_loop_is_held(tmp_path):
    async with held_leader(tmp_path, PATIENT) as h:
        ld, lane = h.leader, h.lane
        acked = await h.lt.run(ld.propose(encode_put("k", b"v")))
        assert await lane.read_index(2.0) is not None  # dials the followers once
        h.hold(10.0)
        await asyncio.sleep(0.2)  # the leader's loop is held from here on
        t0 = time.monotonic()
        core_read = asyncio.wrap_future(ld.read_index_threadsafe())  # the core's round: waits
        index = await lane.read_index(2.0)
        took = time.monotonic() - t0
        # the read needs no apply (its index is applied), and what is applied holds the write
        assert index is not None and index <= ld.applied_index and ld.applied_index >= acked, index
        assert took < 1.0, f"the lane took {took:.2f}s: it waited for the leader's loop"
        assert not core_read.done(), "the core's round answered while its loop was held?"
        assert lane.confirmed == 2 and lane.declined == 0
        assert all(not n.is_leader for nid, n in h.ms.nodes.items() if nid != 1)
        h.release.set()
        assert await asyncio.wait_for(core_read, 5) >= acked


async def test_a_leaders_read_waits_only_for_writes_another_member_may_have_acknowledged(tmp_path):
    """A write proposed through a follower is acknowledged by that follower once it applied
    it, maybe before the leader did: the leader's reads wait for it. The leader's own writes
    are acknowledged only once applied on the leader: its reads need not wait for those."""
    ms = Members(tmp_path, 3)
    ld = await ms.found()
    try:
        fol = next(n for n in ms.nodes.values() if n is not ld)
        theirs = await fol.propose(encode_put("theirs", b"v"))
        for i in range(3):
            await ld.propose(encode_put(f"mine{i}", b"v"))
        commit = ld.core.log.committed
        assert commit > theirs
        assert ld.read_index_now(commit) == theirs
        view, index = ld.lane_read_start()
        assert index == theirs and ld._commit_for_lane() == [view.term, max(theirs, ld.applied_index)]
    finally:
        await ms.stop()


async def test_the_lane_declines_for_a_leader_a_later_term_replaced(tmp_path):
    """The held leader still believes it leads (its loop has not heard of the election), but
    the followers answer a later term: the lane confirms nothing (its caller then asks the
    core's round)."""
    async with held_leader(tmp_path) as h:
        ld, lane = h.leader, h.lane
        term = ld.term
        assert await lane.read_index(2.0) is not None
        h.hold(30.0)
        others = [n for nid, n in h.ms.nodes.items() if nid != 1]
        await wait_for(lambda: any(n.is_leader for n in others), "the followers to elect a leader", 20)
        assert ld.is_leader and ld.term == term and ld.lane_read_start() is not None  # it does not know
        assert await lane.read_index(2.0) is None
        assert lane.declined == 1


async def test_a_lane_without_enough_voters_declines_in_time(tmp_path):
    """Both followers gone: no majority answers; the lane gives up within its timeout (a
    dial to a closed port fails at once, and is not retried for every read)."""
    async with held_leader(tmp_path) as h:
        for nid in (2, 3):
            await h.ms.nodes[nid].stop()
        t0 = time.monotonic()
        assert await h.lane.read_index(1.0) is None
        assert await h.lane.read_index(1.0) is None
        assert time.monotonic() - t0 < 2.5
        assert h.lane.declined == 2


async def test_a_member_answers_its_term_only_to_senders_that_may_speak_raft(tmp_path):
    from swarmkit_py.raft.kv.cluster import free_ports

    (port,) = free_ports(1)
    allowed = {"yes": False}
    tr = Transport(7, "127.0.0.1", port, lambda m: None, authorize=lambda peer: allowed["yes"])
    tr.serve_lane(lambda: 42, lambda: [42, 9])
    await tr.start()
    try:
        conn = await open_connection("127.0.0.1", port)
        assert await conn.call(TERM_METHOD, None, timeout=5) is None
        assert await conn.call(COMMIT_METHOD, None, timeout=5) is None
        assert tr.dropped_unauthorized == 2
        await conn.aclose()
        allowed["yes"] = True
        conn = await open_connection("127.0.0.1", port)  # the verdict is kept per connection
        assert await conn.call(TERM_METHOD, None, timeout=5) == 42
        assert await conn.call(COMMIT_METHOD, None, timeout=5) == [42, 9]
        await conn.aclose()
    finally:
        await tr.stop()


async def test_a_followers_lane_confirms_a_read_while_its_own_loop_is_held(tmp_path):
    """Member 1 follows member 2. With member 1's loop held, its lane still confirms a read at
    an index holding the write the leader acknowledged, from the leader's commit index and
    member 3's term; the core's round (which needs member 1's loop) is still waiting."""
    async with held_leader(tmp_path, PATIENT, leader=2) as h:
        one, lane, ld = h.leader, h.lane, h.ms.nodes[2]
        assert not one.is_leader and one.read_view.leader == 2
        assert await lane.read_index(2.0) is not None  # dials the others once
        h.hold(10.0)
        await asyncio.sleep(0.2)  # member 1's loop is held from here on
        acked = await ld.propose(encode_put("k", b"v"))
        t0 = time.monotonic()
        core_read = asyncio.wrap_future(one.read_index_threadsafe())  # the core's round: waits
        index = await lane.read_index(2.0)
        took = time.monotonic() - t0
        assert index is not None and index >= acked, (index, acked)
        assert took < 1.0, f"the lane took {took:.2f}s"
        assert not core_read.done(), "the core's round answered while member 1's loop was held?"
        assert lane.counts["follower", "confirmed"] == 2 and lane.declined == 0
        h.release.set()
        assert await asyncio.wait_for(core_read, 5) >= acked


async def test_a_followers_lane_declines_when_the_leader_it_names_no_longer_leads(tmp_path):
    """Member 1 (loop held) still names member 2 as its leader, but leadership moved to member
    3: member 2 answers that it does not lead, and the lane confirms nothing."""
    async with held_leader(tmp_path, PATIENT, leader=2) as h:
        one, lane = h.leader, h.lane
        assert await lane.read_index(2.0) is not None
        h.hold(30.0)
        await asyncio.sleep(0.2)
        await h.ms.nodes[2].transfer_leadership(3, timeout=10)
        await wait_for(lambda: h.ms.nodes[3].is_leader and not h.ms.nodes[2].is_leader, "member 3 to lead")
        assert one.lane_read_start()[0].leader == 2  # member 1 does not know
        assert await lane.read_index(2.0) is None
        assert lane.counts["follower", "declined"] == 1


async def test_every_lane_read_holds_every_acknowledged_write_across_leader_changes(tmp_path):
    """Five members, a lane each (leaders and followers alike). Each step writes through a
    random member, then asks a random member's lane: once that member has applied the
    confirmed index (what the API's front waits for), what it has applied must hold every write
    acknowledged so far (a follower's own commit index usually does not yet: it learns it with
    the next message; a leader's own writes are applied on it when acknowledged). Every few
    steps leadership moves to a random member. Seeded."""
    import random

    rng = random.Random(1311)
    ms = Members(tmp_path, 5)
    await ms.found()
    lanes = {nid: ReadLane(n) for nid, n in ms.nodes.items()}
    confirmed = {"leader": 0, "follower": 0}
    acked = 0
    try:
        for step in range(60):
            ld = await ms.leader()
            writer = ms.nodes[rng.choice(sorted(ms.nodes))]
            acked = max(acked, await writer.propose(encode_put(f"k{step}", b"v")))
            nid = rng.choice(sorted(lanes))
            index = await lanes[nid].read_index(2.0)
            if index is not None:
                seen = max(index, ms.nodes[nid].applied_index)  # the front reads once it applied `index`
                assert seen >= acked, (step, nid, index, ms.nodes[nid].applied_index, acked)
                confirmed["leader" if ms.nodes[nid].is_leader else "follower"] += 1
            if step % 7 == 6:
                to = rng.choice([i for i in ms.nodes if i != ld.id])
                await ld.transfer_leadership(to, timeout=10)
        assert confirmed["follower"] >= 20 and confirmed["leader"] >= 5, confirmed
    finally:
        for lane in lanes.values():
            await lane.aclose()
        await ms.stop()
