"""The replicated orchestrator's slot books (issue 13): kept from events, they must say what a
scan of the store says, and a pass must not cost more because a service holds more slots."""

from __future__ import annotations

import random
import sys
from collections import defaultdict

import pytest

from swarmkit_py.manager.orchestrator import ReplicatedOrchestrator, new_task
from swarmkit_py.manager.orchestrator.slotbook import SlotBook, starting
from swarmkit_py.manager.orchestrator.slots import holds, is_replicated, replicas
from swarmkit_py.store import (
    GlobalService,
    ReplicatedService,
    SequenceError,
    Service,
    ServiceMode,
    ServiceSpec,
    TaskState,
    Transaction,
)
from tests.unit.test_orchestrator_fixtures import Harness, settle, template, until

pytestmark = pytest.mark.asyncio

DESIRED = [TaskState.READY, TaskState.RUNNING, TaskState.RUNNING, TaskState.COMPLETE, TaskState.SHUTDOWN,
           TaskState.REMOVE]
STATES = [TaskState.NEW, TaskState.PENDING, TaskState.ASSIGNED, TaskState.STARTING, TaskState.RUNNING,
          TaskState.RUNNING, TaskState.COMPLETE, TaskState.FAILED, TaskState.SHUTDOWN]


def state(book: SlotBook) -> tuple:
    return (book.n, dict(book.tasks), set(book.removing), dict(book.held), book.starting,
            dict(book._starting_at), set(book.above))


class Checked(ReplicatedOrchestrator):
    """Small limits (so budgets, backlogs and throttling happen in a few tasks), and after
    every attempt of every pass: each book it can vouch for agrees with a scan of the view,
    and what the attempt decided is what a scan of the view says it should."""

    create_budget = 7
    starting_window = 12

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.checks = 0

    def reconcile(self, view, batch, events):
        super().reconcile(view, batch, events)
        for (_, tid), c in batch.updates.items():  # copies: the stored tasks are untouched
            assert view.get_task(tid).desired_state < c.desired_state
        created: dict[str, list[int]] = defaultdict(list)
        for t in batch.creates:
            created[t.service_id].append(t.slot)
        for sid, book in self._books.items():
            if self._synced < view.index and book.base < view.index:
                continue  # an attempt after a conflict: rebuilt before it is used
            scan = SlotBook.build(view.tasks(service_id=sid), book.n, view.index)
            assert state(book) == state(scan), sid
            assert book.missing() == [s for s in scan.missing() if s not in created[sid]], sid
            self.checks += 1
        looked = {s.id for s in view.services()} | set(self._books) if events is None else self._plan[0]
        for sid in looked:
            self._check_decisions(view, batch, sid, created[sid])

    def _check_decisions(self, view, batch, sid, created):
        svc = view.get_service(sid)
        tasks = [t for t in view.tasks(service_id=sid) if t.slot is not None]
        changed = {k[1]: o for k, o in batch.updates.items()}
        more = sid in self._backlog
        if svc is None:
            left = [t for t in tasks if t.desired_state < TaskState.REMOVE]
            marked = [t for t in left if t.id in changed]
            assert all(changed[t.id].desired_state == TaskState.REMOVE for t in marked)
            assert more or len(marked) == len(left)
            return
        if not is_replicated(svc):
            return
        n = replicas(svc)
        above = sorted((t for t in tasks if holds(t) and t.slot > n), key=lambda t: t.slot)
        stopped = [t for t in above if t.id in changed]
        assert all(changed[t.id].desired_state == TaskState.SHUTDOWN for t in stopped)
        assert more or len(stopped) == len(above), "every task above the replicas stopped"
        if stopped:  # lowest slots first
            top = max(t.slot for t in stopped)
            assert all(t.id in changed for t in above if t.slot < top)
        held = {t.slot for t in tasks if holds(t)}
        missing = [s for s in range(1, n + 1) if s not in held]
        assert created == missing[: len(created)], "the lowest missing slots, in order"
        on_their_way = sum(1 for t in tasks if holds(t) and t.slot <= n and starting(t))
        assert len(created) <= max(0, self.starting_window - on_their_way)
        if len(created) < len(missing):
            assert more or sid in self._throttled


class Conflicting:
    """A proposer that, now and then, lets another writer in first and answers a conflict
    (the store has moved on; the loop must rebuild its pass from a fresh view)."""

    def __init__(self, inner, rng, write):
        self.inner, self.rng, self.write = inner, rng, write
        self.conflicts = 0
        self.p = 0.25

    @property
    def store(self):
        return self.inner.store

    async def propose(self, tx, timeout=None):
        if self.rng.random() < self.p:
            self.conflicts += 1
            self.write()
            raise SequenceError()
        return await self.inner.propose(tx, timeout)


class World:
    """Random writes another loop, the dispatcher or a user could make."""

    def __init__(self, h: Harness, rng: random.Random) -> None:
        self.h, self.rng = h, rng
        self.services: dict[str, Service] = {}  # deleted ones too: late tasks of them

    def svc(self, n=None, global_=False) -> None:
        mode = ServiceMode(global_=GlobalService()) if global_ else \
            ServiceMode(replicated=ReplicatedService(replicas=self.rng.randint(0, 25) if n is None else n))
        s = Service(id=f"s{len(self.services)}", spec=ServiceSpec(name=f"s{len(self.services)}",
                                                                 task_template=template(), mode=mode))
        self.services[s.id] = s
        self.h._apply(Transaction(self.h.clock()).create(s))

    def step(self) -> None:
        h, rng = self.h, self.rng
        view = h.view()
        live = view.services()
        tasks = view.list("task")
        tx = Transaction(h.clock())
        op = rng.randrange(10)
        if op == 0 and live:  # scale up or down
            s = rng.choice(live).clone()
            if s.spec.mode.replicated is None:
                return
            s.spec.mode.replicated.replicas = rng.choice([0, 1, 3, 10, 25, 40])
            tx.update(s)
        elif op == 1 and rng.random() < 0.3:
            if live and rng.random() < 0.5:
                tx.delete("service", rng.choice(live).id)
            else:
                self.svc(global_=rng.random() < 0.1)
                return
        elif op in (2, 3) and self.services:  # a task made elsewhere, for a live or deleted service
            s = self.services[rng.choice(list(self.services))]
            if s.spec.mode.replicated is None:
                return
            t = new_task(s, f"x{rng.getrandbits(40):x}", h.clock(), slot=rng.randint(1, 30))
            t.desired_state = rng.choice(DESIRED)
            t.status.state = rng.choice(STATES)
            tx.create(t)
        elif op in (4, 5, 6) and tasks:  # status reports
            for t in rng.sample(tasks, min(len(tasks), rng.randint(1, 6))):
                c = t.clone()
                c.status.state = rng.choice(STATES)
                tx.update(c)
        elif op == 7 and tasks:  # desired state changes (restart, update, node failure, reaper)
            c = rng.choice(tasks).clone()
            c.desired_state = rng.choice(DESIRED)
            tx.update(c)
        elif op == 8 and tasks:
            for t in rng.sample(tasks, min(len(tasks), rng.randint(1, 3))):
                tx.delete("task", t.id)
        else:
            return
        h._apply(tx)


@pytest.mark.parametrize("seed", range(3))
async def test_books_agree_with_a_scan_after_random_events(seed):
    rng = random.Random(seed)
    h = Harness()
    world = World(h, rng)
    for _ in range(3):
        world.svc()
    proposer = Conflicting(h.proposer, rng, world.step)
    orch = Checked(proposer, **h.kw())
    orch.follower.open()
    await orch.run_pass(None)
    for _ in range(500):
        world.step()
        if rng.random() < 0.35:
            await orch.run_pass(orch.follower.poll())
        if rng.random() < 0.01:  # a lost watch: a full pass
            await orch.run_pass(None)
    proposer.p = 0
    for _ in range(30):  # and it converges: nothing left to do
        await orch.run_pass(orch.follower.poll())
    assert not orch._backlog
    orch.follower.close()
    assert orch.checks > 400 and proposer.conflicts > 20, (orch.checks, proposer.conflicts)


async def test_scale_down_stops_the_lowest_slots_first_within_the_budget():
    h = Harness()
    orch = Checked(h.proposer, **h.kw())
    orch.create_budget, orch.starting_window = 5, 100
    orch.follower.open()
    world = World(h, random.Random(1))
    world.svc(n=20)
    sid = "s0"
    while (events := orch.follower.poll()) or orch._backlog:
        await orch.run_pass(events)
    await h.scale(sid, 8)
    await orch.run_pass(orch.follower.poll())
    shut = sorted(t.slot for t in h.tasks(sid) if t.desired_state == TaskState.SHUTDOWN)
    assert shut == [9, 10, 11, 12, 13] and sid in orch._backlog
    orch.follower.close()


def lines_run(fn) -> int:
    """Python lines executed while `fn()` runs (a deterministic cost, unlike time)."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


class Counted(ReplicatedOrchestrator):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.cost: list[int] = []

    def reconcile(self, view, batch, events):
        self.cost.append(lines_run(lambda: super(Counted, self).reconcile(view, batch, events)))


async def _cost_of_refilling_one_slot(n: int) -> int:
    h = Harness()
    await h.add_node("n1")
    (orch,) = await h.start(Counted)
    sid = await h.add_service("web", n)
    for _ in range(30):  # the window lets 1,000 start at a time
        await h.work()
        await settle()
        if len(h.running(sid)) == n:
            break
    assert len(h.running(sid)) == n
    victim = next(t for t in h.tasks(sid) if t.slot == n // 2).clone()
    victim.desired_state = TaskState.SHUTDOWN  # as the restart supervisor or an update does
    before = len(orch.cost)
    await h.write(victim)
    await until(lambda: sorted(t.slot for t in h.runnable(sid)) == list(range(1, n + 1)), what="refilled")
    await settle()
    await h.stop()
    return sum(orch.cost[before:])


async def test_a_pass_does_not_walk_the_slots_a_service_holds():
    """Refilling one slot of a service costs the same with 100 or 1,000 held slots: the pass
    goes by the events and the books, not over the service's tasks (it did: issue 13)."""
    small = await _cost_of_refilling_one_slot(100)
    big = await _cost_of_refilling_one_slot(1000)
    assert big <= small + 20, (small, big)
