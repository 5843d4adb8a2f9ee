"""Shared harness for the orchestrator tests: a store with a LocalProposer that counts
proposals, a ManualClock, and a tiny stand-in for the scheduler and workers (`work()`), so
each test decides exactly when tasks get placed, start, fail or stop."""

from __future__ import annotations

import asyncio
import itertools
import random
import time

from swarmkit_py.manager.orchestrator import ManualClock
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.store import (
    Cluster,
    ClusterSpec,
    ContainerSpec,
    GlobalService,
    MemoryStore,
    Node,
    NodeAvailability,
    NodeDescription,
    NodeSpec,
    NodeState,
    NodeStatus,
    OrchestrationConfig,
    ReplicatedService,
    RestartPolicy,
    Service,
    ServiceMode,
    ServiceSpec,
    Task,
    TaskSpec,
    TaskState,
    Transaction,
    UpdateConfig,
    new_id,
)

NS = 1_000_000_000


class CountingProposer(LocalProposer):
    def __init__(self, store=None):
        super().__init__(store)
        self.sizes: list[int] = []

    async def propose(self, tx, timeout=None):
        self.sizes.append(len(tx))
        return await super().propose(tx, timeout)


def template(image="busybox:1", **kw) -> TaskSpec:
    return TaskSpec(container_spec=ContainerSpec(image=image), **kw)


class Harness:
    def __init__(self, history_limit: int | None = None) -> None:
        self.store = MemoryStore()
        self.proposer = CountingProposer(self.store)
        self.clock = ManualClock()
        self.rng = random.Random(7)
        self.loops = []
        self._rr = itertools.count()
        orch = OrchestrationConfig(task_history_retention_limit=history_limit)
        self._apply(Transaction(self.clock()).create(Cluster(id=new_id(self.rng), spec=ClusterSpec(name="default", orchestration=orch))))

    def kw(self):
        return {"clock": self.clock, "sleep": self.clock.sleep, "rng": self.rng, "retry_delay": 0.01}

    async def start(self, *classes, **extra):
        for cls in classes:
            loop = cls(self.proposer, **self.kw(), **extra.get(cls.__name__, {}))
            self.loops.append(loop)
            loop.start()
        await settle()
        return self.loops[-len(classes):]

    async def stop(self):
        for loop in reversed(self.loops):
            await loop.stop()
        self.loops = []

    # -- writes -----------------------------------------------------------------------------------

    def _apply(self, tx):
        index = self.store.applied_index + 1
        self.proposer._index = index
        result = self.store.apply_tx(index, tx)
        if isinstance(result, Exception):
            raise result
        return result

    async def write(self, *objs, create=False):
        tx = Transaction(self.clock())
        for o in objs:
            (tx.create if create else tx.update)(o)
        self._apply(tx)
        await settle()

    def view(self):
        return self.store.view()

    async def add_node(self, name, state=NodeState.READY, availability=NodeAvailability.ACTIVE, labels=None):
        node = Node(
            id=new_id(self.rng),
            spec=NodeSpec(availability=availability, labels=labels or {}),
            description=NodeDescription(hostname=name),
            status=NodeStatus(state=state),
        )
        await self.write(node, create=True)
        return node.id

    async def edit_node(self, node_id, fn):
        n = self.view().get_node(node_id).clone()
        fn(n)
        await self.write(n)

    async def set_node_state(self, node_id, state):
        await self.edit_node(node_id, lambda n: setattr(n.status, "state", state))

    async def add_service(self, name="web", replicas=3, *, global_=False, spec=None, update=None, rollback=None, restart=None):
        tpl = spec or template()
        if restart is not None:
            tpl.restart_policy = restart
        mode = ServiceMode(global_=GlobalService()) if global_ else ServiceMode(replicated=ReplicatedService(replicas=replicas))
        svc = Service(
            id=new_id(self.rng),
            spec=ServiceSpec(name=name, task_template=tpl, mode=mode, update_config=update, rollback_config=rollback),
        )
        await self.write(svc, create=True)
        return svc.id

    async def update_service(self, sid, fn, *, api=True):
        """As the API does: PreviousSpec <- Spec, apply `fn` to the spec, reset UpdateStatus."""
        s = self.view().get_service(sid).clone()
        if api:
            s.previous_spec = s.spec.model_copy(deep=True)
            s.update_status = None
        fn(s.spec)
        await self.write(s)

    async def scale(self, sid, n):
        def fn(spec):
            spec.mode.replicated.replicas = n

        await self.update_service(sid, fn)

    async def manual_rollback(self, sid):
        from swarmkit_py.store import UpdateState, UpdateStatus

        s = self.view().get_service(sid).clone()
        s.spec, s.previous_spec = s.previous_spec, s.spec
        s.update_status = UpdateStatus(state=UpdateState.ROLLBACK_STARTED, started_at=self.clock(), message="manually requested rollback")
        await self.write(s)

    async def delete_service(self, sid):
        self._apply(Transaction(self.clock()).delete("service", sid))
        await settle()

    async def set_task(self, task_id, state, **kw):
        """As the dispatcher does with a worker's report."""
        t = self.view().get_task(task_id).clone()
        t.status.state = state
        t.status.timestamp = self.clock()
        for k, v in kw.items():
            setattr(t, k, v)
        await self.write(t)

    # -- scheduler + workers stand-in --------------------------------------------------------------

    async def work(self, *, fail=lambda t: False, place=True):
        """One round of 'the cluster does its job': place pending tasks round-robin on ready
        active nodes, run everything desired running (or fail it if `fail(t)`), stop
        everything desired stopped. Tasks on down nodes are left alone (the host is dead)."""
        view = self.view()
        nodes = [n for n in view.nodes() if n.status.state == NodeState.READY and n.spec.availability == NodeAvailability.ACTIVE]
        down = {n.id for n in view.nodes() if n.status.state == NodeState.DOWN}
        tx = Transaction(self.clock())
        for t in view.list("task"):
            if t.node_id in down:
                continue
            c = t.clone()
            if t.desired_state <= TaskState.RUNNING and t.status.state < TaskState.RUNNING:
                if c.node_id is None:
                    if not place or not nodes:
                        continue
                    c.node_id = nodes[next(self._rr) % len(nodes)].id
                c.status.state = TaskState.FAILED if fail(t) else TaskState.RUNNING
            elif t.desired_state > TaskState.RUNNING and not t.status.state.terminal:
                c.status.state = TaskState.SHUTDOWN
            else:
                continue
            c.status.timestamp = self.clock()
            tx.update(c)
        if tx.ops:
            self._apply(tx)
        await settle()

    # -- reads ------------------------------------------------------------------------------------

    def tasks(self, sid) -> list[Task]:
        return self.view().tasks(service_id=sid)

    def runnable(self, sid) -> list[Task]:
        return [t for t in self.tasks(sid) if t.desired_state <= TaskState.RUNNING]

    def running(self, sid) -> list[Task]:
        return [t for t in self.runnable(sid) if t.status.state == TaskState.RUNNING]

    def service(self, sid) -> Service:
        return self.view().get_service(sid)


async def settle(rounds: int = 60) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(pred, timeout: float = 3.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def restart(condition=None, delay=None, max_attempts=None, window=None) -> RestartPolicy:
    return RestartPolicy(
        condition=condition,
        delay=None if delay is None else int(delay * NS),
        max_attempts=max_attempts,
        window=None if window is None else int(window * NS),
    )


def update_config(**kw) -> UpdateConfig:
    for k in ("delay", "monitor"):
        if k in kw:
            kw[k] = int(kw[k] * NS)
    return UpdateConfig(**kw)
