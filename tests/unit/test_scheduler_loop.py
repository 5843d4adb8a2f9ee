"""The scheduler's leader loop on a LocalProposer store: batches, pending reasons, retries."""

from __future__ import annotations

import asyncio

import pytest
from test_scheduler_helpers import node, spec, task

from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.manager.scheduler import ASSIGNED_MESSAGE, PREASSIGNED_MESSAGE, SchedulerLoop
from swarmkit_py.store import (
    MemoryStore,
    NodeAvailability,
    NodeState,
    SequenceError,
    TaskState,
    Transaction,
)


async def wait_until(what: str, cond, timeout: float = 5.0):
    """Poll `cond` until it returns something truthy, or fail saying what was awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.002)


@pytest.fixture
async def env():
    store = MemoryStore()
    proposer = LocalProposer(store)
    loops: list[SchedulerLoop] = []

    async def start(p=None, **kw) -> SchedulerLoop:
        loop = SchedulerLoop(p or proposer, **kw)
        loops.append(loop)
        loop.start()
        return loop

    yield store, proposer, start
    for loop in loops:
        await loop.stop()


async def put(proposer, *objs, update: bool = False):
    tx = Transaction()
    for o in objs:
        (tx.update if update else tx.create)(o)
    return await proposer.propose(tx)


def tasks_in(store, ids=None):
    view = store.view()
    return [t for t in view.list("task") if ids is None or t.id in ids]


def all_assigned(store, ids):
    ts = tasks_in(store, ids)
    return len(ts) == len(ids) and all(t.status.state == TaskState.ASSIGNED for t in ts)


async def test_new_service_is_one_batch_one_transaction(env):
    store, proposer, start = env
    await put(proposer, *[node(f"n{i}", labels={"rack": str(i % 3)}) for i in range(6)])
    loop = await start(debounce=0.05, max_delay=1.0)
    s = spec(spread=["node.labels.rack"])
    replicas = [task("web", s, slot=i + 1) for i in range(100)]
    # the orchestrator may create them over several transactions: still one batch
    for i in range(0, 100, 25):
        await put(proposer, *replicas[i : i + 25])
        await asyncio.sleep(0.005)  # the loop wakes up in between, and waits for the rest
    ids = {t.id for t in replicas}
    await wait_until("100 tasks assigned", lambda: all_assigned(store, ids))
    stored = tasks_in(store, ids)
    assert len({t.version.index for t in stored}) == 1, "all written by one transaction"
    assert loop.stats["transactions"] == 1 and loop.stats["assigned"] == 100
    assert all(t.status.message == ASSIGNED_MESSAGE and t.status.err is None for t in stored)
    per_rack: dict[str, int] = {}
    for t in stored:
        rack = store.view().get_node(t.node_id).spec.labels["rack"]
        per_rack[rack] = per_rack.get(rack, 0) + 1
    assert sorted(per_rack.values()) == [33, 33, 34]


async def test_pending_tasks_already_in_the_store_at_start(env):
    store, proposer, start = env
    await put(proposer, node("a"), node("b"))
    ts = [task("web", slot=i + 1) for i in range(4)]
    await put(proposer, *ts)
    await start()
    ids = {t.id for t in ts}
    await wait_until("tasks assigned", lambda: all_assigned(store, ids))
    assert sorted(t.node_id for t in tasks_in(store, ids)) == ["a", "a", "b", "b"]


async def test_unplaceable_gets_reason_then_retries_when_node_becomes_ready(env):
    store, proposer, start = env
    down = node("a", state="down")
    await put(proposer, down)
    loop = await start()
    t = task("web")
    await put(proposer, t)
    err = await wait_until("the pending reason", lambda: store.view().get_task(t.id).status.err)
    assert err == "no suitable node (1 node not available for new tasks)"
    cur = store.view().get_task(t.id)
    assert cur.status.state == TaskState.PENDING and cur.node_id is None

    # the node comes back: the waiting task is placed with no other trigger
    ready = store.view().get_node("a").clone()
    ready.status.state = NodeState.READY
    await put(proposer, ready, update=True)
    await wait_until("assignment after the node became ready", lambda: all_assigned(store, {t.id}))
    cur = store.view().get_task(t.id)
    assert cur.node_id == "a" and cur.status.err is None
    assert loop.stats["errors_written"] == 1


async def test_drained_node_reactivated(env):
    store, proposer, start = env
    await put(proposer, node("a", availability="drain"), node("b", availability="pause"))
    await start()
    t = task("web")
    await put(proposer, t)
    err = await wait_until("the pending reason", lambda: store.view().get_task(t.id).status.err)
    assert err == "no suitable node (2 nodes not available for new tasks)"
    n = store.view().get_node("b").clone()
    n.spec.availability = NodeAvailability.ACTIVE
    await put(proposer, n, update=True)
    await wait_until("assignment to the reactivated node", lambda: all_assigned(store, {t.id}))
    assert store.view().get_task(t.id).node_id == "b"


async def test_reason_written_only_when_it_changes(env):
    store, proposer, start = env
    await put(proposer, node("a", labels={"zone": "b"}), node("b", labels={"zone": "b"}))
    loop = await start()
    t = task("web", spec(constraints=["node.labels.zone==a"]))
    await put(proposer, t)
    await wait_until("the pending reason", lambda: store.view().get_task(t.id).status.err)
    version = store.view().get_task(t.id).version.index
    batches = loop.stats["batches"]

    # a node change that does not alter the verdict: re-evaluated, not rewritten
    n = store.view().get_node("a").clone()
    n.spec.labels["other"] = "x"
    await put(proposer, n, update=True)
    await wait_until("a new scheduling pass", lambda: loop.stats["batches"] > batches)
    assert store.view().get_task(t.id).version.index == version
    assert loop.stats["errors_written"] == 1

    # a third node that does not match either: the reason changes, so it is rewritten
    await put(proposer, node("c", labels={"zone": "c"}))
    err = await wait_until(
        "the updated reason",
        lambda: (e := store.view().get_task(t.id).status.err) and "3 nodes" in e and e,
    )
    assert err == "no suitable node (scheduling constraints not satisfied on 3 nodes)"

    # and a matching label places it
    n = store.view().get_node("c").clone()
    n.spec.labels["zone"] = "a"
    await put(proposer, n, update=True)
    await wait_until("assignment", lambda: all_assigned(store, {t.id}))
    assert store.view().get_task(t.id).node_id == "c"


async def test_freed_resources_retry_pending(env):
    store, proposer, start = env
    await put(proposer, node("a", cpus=1))
    await start()
    first = task("db", spec(cpus=1), slot=1)
    await put(proposer, first)
    await wait_until("first assigned", lambda: all_assigned(store, {first.id}))
    second = task("db", spec(cpus=1), slot=2)
    await put(proposer, second)
    err = await wait_until("second waits", lambda: store.view().get_task(second.id).status.err)
    assert err == "no suitable node (insufficient resources on 1 node)"
    # the first one ends: its reservation is released and the second gets the node
    done = store.view().get_task(first.id).clone()
    done.status.state = TaskState.COMPLETE
    done.desired_state = TaskState.SHUTDOWN
    await put(proposer, done, update=True)
    await wait_until("second assigned", lambda: all_assigned(store, {second.id}))


async def test_global_preset_node(env):
    store, proposer, start = env
    await put(proposer, node("a", cpus=2), node("b", cpus=2, availability="drain"))
    await start()
    ok = task("glob", spec(cpus=1), slot=None, node_id="a")
    too_big = task("glob2", spec(cpus=4), slot=None, node_id="a")
    drained = task("glob", spec(cpus=1), slot=None, node_id="b")
    await put(proposer, ok, too_big, drained)
    await wait_until("preset task confirmed", lambda: all_assigned(store, {ok.id}))
    assert store.view().get_task(ok.id).status.message == PREASSIGNED_MESSAGE
    assert store.view().get_task(ok.id).node_id == "a"
    err_big = await wait_until("reason", lambda: store.view().get_task(too_big.id).status.err)
    err_drained = await wait_until("reason", lambda: store.view().get_task(drained.id).status.err)
    assert err_big == "no suitable node (insufficient resources on 1 node)"
    assert err_drained == "no suitable node (1 node not available for new tasks)"
    assert store.view().get_task(too_big.id).status.state == TaskState.PENDING


async def test_ignores_tasks_not_meant_to_run(env):
    store, proposer, start = env
    await put(proposer, node("a"))
    loop = await start()
    stopped = task("web", desired="shutdown")
    running = task("web", state="running", node_id="a")
    await put(proposer, stopped, running)
    marker = task("web", slot=3)
    await put(proposer, marker)
    await wait_until("the marker assigned", lambda: all_assigned(store, {marker.id}))
    assert store.view().get_task(stopped.id).status.state == TaskState.PENDING
    assert store.view().get_task(stopped.id).node_id is None
    assert loop.stats["assigned"] == 1


class ConflictingProposer(LocalProposer):
    """Before the scheduler's first write lands, someone else updates one of its tasks."""

    def __init__(self, store):
        super().__init__(store)
        self.armed = False
        self.refused = 0

    async def propose(self, tx, timeout=None):
        if self.armed:
            self.armed = False
            victim = self.store.view().get_task(tx.ops[0].id).clone()
            victim.labels["touched"] = "yes"
            await super().propose(Transaction().update(victim))
        try:
            return await super().propose(tx, timeout)
        except SequenceError:
            self.refused += 1
            raise


async def test_sequence_error_rereads_and_retries(env):
    store, _, start = env
    proposer = ConflictingProposer(store)
    await put(proposer, node("a"), node("b"))
    ts = [task("web", slot=i + 1) for i in range(10)]
    await put(proposer, *ts)
    proposer.armed = True
    loop = await start(proposer)
    ids = {t.id for t in ts}
    await wait_until("all assigned after the conflict", lambda: all_assigned(store, ids))
    assert proposer.refused == 1 and loop.stats["conflicts"] == 1
    stored = tasks_in(store, ids)
    assert [t.labels.get("touched") for t in stored].count("yes") == 1, (
        "the other writer's change survives"
    )
    assert sorted(t.node_id for t in stored).count("a") == 5


async def test_deleted_task_during_conflict_is_dropped(env):
    store, proposer, start = env
    await put(proposer, node("a"))
    loop = await start()
    t = task("web")
    await put(proposer, t)
    await wait_until("assigned", lambda: all_assigned(store, {t.id}))
    await proposer.propose(Transaction().delete("task", t.id))
    await wait_until("forgotten", lambda: loop.nodes.holds(t.id) is None)
    assert loop.nodes.get("a").active_tasks == 0


class FlakyProposer(LocalProposer):
    """Fails like a leader without quorum a few times, then works."""

    def __init__(self, store, failures: int):
        super().__init__(store)
        self.failures = failures

    async def propose(self, tx, timeout=None):
        if self.failures and any(op.kind == "task" and op.action == "update" for op in tx.ops):
            self.failures -= 1
            raise RuntimeError("no quorum")
        return await super().propose(tx, timeout)


async def test_transient_failures_are_retried_without_leaking_placements(env):
    store, _, start = env
    proposer = FlakyProposer(store, failures=2)
    await put(proposer, node("a", cpus=1))
    loop = await start(proposer, retry_delay=0.005)
    t = task("web", spec(cpus=1))
    await put(proposer, t)
    await wait_until("assigned after retries", lambda: all_assigned(store, {t.id}))
    assert proposer.failures == 0
    # the failed attempts left no phantom reservation behind
    assert loop.nodes.get("a").available_cpu == 0


async def test_stop_is_clean_and_restart_reads_the_store(env):
    store, proposer, start = env
    await put(proposer, node("a"))
    loop = await start()
    await loop.stop()
    assert store.watcher_count == 0
    t = task("web")
    await put(proposer, t)
    await asyncio.sleep(0)  # nothing runs any more
    assert store.view().get_task(t.id).status.state == TaskState.PENDING
    await start()
    await wait_until("assigned by the new loop", lambda: all_assigned(store, {t.id}))
