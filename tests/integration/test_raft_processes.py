"""The Raft engine as real OS processes on loopback: crashes are SIGKILLs, disks are real.

Every acknowledged write must survive any minority of crashes and a restart of everyone.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from swarmkit_py.raft.kv.cluster import LocalCluster
from swarmkit_py.rpc import RpcError

pytestmark = pytest.mark.slow


@pytest.fixture
async def cluster5(tmp_path):
    c = LocalCluster(5, tmp_path)
    await c.start()
    yield c
    await c.stop()


async def _put_until_ok(c: LocalCluster, nodes, key: str, value: bytes, deadline_s: float = 10.0):
    deadline = time.monotonic() + deadline_s
    while True:
        for n in nodes:
            try:
                return await c.put(n, key, value, timeout=1.0)
            except (RpcError, OSError):
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"write {key} never succeeded on {nodes}")
        await asyncio.sleep(0.05)


async def test_leader_sigkill_loses_no_acknowledged_write_and_member_catches_up(cluster5):
    c = cluster5
    leader = await c.wait_leader()
    acked = {}
    for i in range(200):
        key = f"k{i}"
        await c.put(leader if i % 2 else [n for n in c.members if n != leader][0], key, b"v%d" % i)
        acked[key] = b"v%d" % i

    await c.kill(leader)
    survivors = [n for n in c.members if n != leader]
    t0 = time.monotonic()
    new_leader = await c.wait_leader(exclude={leader})
    elected_after = time.monotonic() - t0
    assert new_leader != leader
    assert elected_after < 5, f"election took {elected_after:.2f}s"

    for i in range(200, 260):
        await _put_until_ok(c, survivors, f"k{i}", b"v%d" % i)
        acked[f"k{i}"] = b"v%d" % i

    for n in survivors:
        for key, value in acked.items():
            assert await c.get(n, key) == value, f"member {n} lost acknowledged write {key}"

    await c.restart(leader)
    deadline = time.monotonic() + 10
    want = (await c.status(new_leader))["commit"]
    while (await c.status(leader))["applied"] < want:
        assert time.monotonic() < deadline, "restarted member did not catch up"
        await asyncio.sleep(0.05)
    st = await c.status(leader)
    assert st["role"] == "follower" and st["leader"] == new_leader
    for key, value in acked.items():
        assert await c.get(leader, key) == value


async def test_restart_of_every_member_at_once_keeps_every_write(cluster5):
    c = cluster5
    leader = await c.wait_leader()
    for i in range(300):
        await c.put(leader, f"k{i}", b"x%d" % i)
    for n in list(c.members):
        await c.kill(n)  # all at once: nothing but the fsynced WAL survives
    for n in list(c.members):
        c._spawn(c.members[n], c.founders, None)
    for n in list(c.members):
        await c.wait_up(n)
    leader = await c.wait_leader()
    for i in range(0, 300, 7):
        assert await c.get(leader, f"k{i}") == b"x%d" % i


async def test_minority_refuses_writes_with_a_clear_error_in_bounded_time(cluster5):
    c = cluster5
    leader = await c.wait_leader()
    await c.put(leader, "before", b"1")
    # An acknowledged write is on a majority, not necessarily on the two members that will be
    # left: wait until every member has applied it, so the stale read below has it to find.
    deadline = time.monotonic() + 20
    while any([await c.call(n, "kv.get", {"k": "before", "linearizable": False}) != b"1" for n in c.members]):
        assert time.monotonic() < deadline, "the write did not reach every member within 20 s"
        await asyncio.sleep(0.05)
    victims = [leader] + [n for n in c.members if n != leader][:2]
    for n in victims:
        await c.kill(n)
    left = [n for n in c.members if n not in victims]
    t0 = time.monotonic()
    with pytest.raises(RpcError) as ei:
        await c.put(left[0], "after", b"2", timeout=2.0)
    assert time.monotonic() - t0 < 4.0
    assert ei.value.code == "no_quorum"
    assert "majority" in ei.value.message
    # reads of the local copy still work without quorum when asked for a stale read
    assert await c.call(left[0], "kv.get", {"k": "before", "linearizable": False}) == b"1"


async def test_new_member_joins_as_learner_then_votes(cluster5, tmp_path):
    c = cluster5
    leader = await c.wait_leader()
    for i in range(50):
        await c.put(leader, f"k{i}", b"v")
    await c.add(6)
    st = await c.status(leader)
    voters = {x["id"] for x in st["members"] if x["voter"]}
    assert 6 in voters and len(voters) == 6
    assert await c.get(6, "k49") == b"v"


async def test_removed_leader_steps_down_and_the_rest_carry_on(cluster5):
    c = cluster5
    leader = await c.wait_leader()
    await c.put(leader, "a", b"1")
    await c.call(leader, "kv.remove_member", {"id": leader})
    new_leader = await c.wait_leader(exclude={leader})
    assert new_leader != leader
    st = await c.status(new_leader)
    assert leader not in {m["id"] for m in st["members"]}
    assert len(st["members"]) == 4
    await _put_until_ok(c, [new_leader], "b", b"2")
    assert await c.get(new_leader, "a") == b"1"


async def test_leadership_transfer_hands_over_without_losing_writes(cluster5):
    c = cluster5
    leader = await c.wait_leader()
    await c.put(leader, "a", b"1")
    target = [n for n in c.members if n != leader][0]
    assert await c.call(leader, "kv.transfer", {"to": target}) == target
    assert await c.wait_leader() == target
    await c.put(target, "b", b"2")
    assert await c.get(leader, "a") == b"1"


async def test_batched_writes_over_a_connection_each_get_their_own_outcome(tmp_path):
    """`kv.put_many` (a client pipelining writes in one request): every write is its own entry
    with its own index, through the leader or forwarded by a follower, on every member; bad
    input is refused whole with a message saying what a write must look like."""
    c = LocalCluster(3, tmp_path)
    await c.start()
    try:
        leader = await c.wait_leader()
        follower = next(n for n in c.members if n != leader)
        for node in (leader, follower):
            indexes, errors = await c.put_many(node, [(f"{node}-{i}", b"v%d" % i) for i in range(300)])
            assert errors == []
            assert len(set(indexes)) == 300 and indexes == sorted(indexes), "one entry per write, in order"
        for node in c.members:
            assert await c.get(node, f"{follower}-299") == b"v299"
            assert await c.get(node, f"{leader}-0") == b"v0"
        for bad in ({"puts": [["k", "a str, not bytes"]]}, {"puts": [["only a key"]]}, {"puts": "k=v"}):
            with pytest.raises(RpcError) as ei:
                await c.call(leader, "kv.put_many", bad)
            assert ei.value.code == "bad_request" and "[key" in ei.value.message
        assert await c.call(leader, "kv.get", {"k": "k"}) is None
    finally:
        await c.stop()
