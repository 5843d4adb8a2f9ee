"""One rolling update (or rollback) of one service: Swarm's updater, as an asyncio task.

- `parallelism` workers (0 = one per dirty slot) each take a slot, replace its task, wait for
  the new task to reach `running` (or to fail), then wait `delay` before taking the next: so
  never more than `parallelism` slots are being replaced at once.
- stop-first: one transaction marks the old task desired `shutdown` and creates the new one.
  start-first: the new task is created first; the old one is shut down once the new runs.
- Every new task is watched from creation until `monitor` after it started running; a task
  failing in that window counts against `max_failure_ratio` (failures / dirty slots). Past
  the ratio, `failure_action`: `pause` (state `paused`), `rollback` (Spec <- PreviousSpec,
  state `rollback_started`; the supervisor then starts the rollback), or `continue`.
  A failing rollback pauses (`rollback_paused`): a rollback is never rolled back.
- After the last slot, one more `monitor` period of watching, then `completed` ("update
  completed") or `rollback_completed` ("rollback completed").
Status strings are swarmkit's (updater.go), because the docker CLI prints them verbatim.

The rollout stops quietly when cancelled (the supervisor saw a newer spec) and never writes
a status for a spec that is no longer the service's.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from ...store import (
    FailureAction,
    Service,
    StoreError,
    TaskState,
    Transaction,
    UpdateOrder,
    UpdateState,
    UpdateStatus,
    WatchClosed,
)
from .defaults import rollout_config
from .placement import keeps
from .plan import rolling_back, slot_tasks
from .slots import is_global, runnable
from .taskinit import new_task
from .uptodate import is_up_to_date, same_spec

log = logging.getLogger("swarmkit_py.manager.orchestrator.update")

IN_PROGRESS = "update in progress"
COMPLETED = "update completed"
ROLLBACK_COMPLETED = "rollback completed"


def paused_message(task_id: str, rollback: bool) -> str:
    what = "rollback" if rollback else "update"
    return f"{what} paused due to failure or early termination of task {task_id}"


def rolled_back_message(task_id: str) -> str:
    return f"update rolled back due to failure or early termination of task {task_id}"


class Superseded(Exception):
    """The service moved on (new spec, deleted): this rollout has nothing left to do."""


class Rollout:
    def __init__(self, loop, service: Service, slots: list, template_changed: bool) -> None:
        self.loop = loop
        self.service_id = service.id
        self.template = service.spec.task_template.model_copy(deep=True)
        self.rollback = rolling_back(service)
        cfg = service.spec.rollback_config if self.rollback else service.spec.update_config
        self.cfg = rollout_config(cfg)
        self.slots = list(slots)
        self.template_changed = template_changed
        self.failures: set[str] = set()
        self.started: dict[str, datetime | None] = {}
        """New task ID -> when it was first seen running (None until then)."""
        self._settled: dict[str, asyncio.Event] = {}
        self._stop = asyncio.Event()
        self._failed_task: str | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.task: asyncio.Task | None = None

    # -- identity -------------------------------------------------------------------------------

    def targets(self, service: Service) -> bool:
        """Still the rollout this service needs: same template, same direction."""
        return same_spec(self.template, service.spec.task_template) and self.rollback == rolling_back(service)

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"rollout-{self.service_id}")
        self.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        """A rollout that raised is logged (never dropped with its task) and the update
        supervisor gets a pass, which plans the service again."""
        if not task.cancelled() and task.exception() is not None:
            log.error("rollout of service %s failed", self.service_id, exc_info=task.exception())
            self.loop.kick()

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    @property
    def store(self):
        return self.loop.store

    def _current(self) -> Service | None:
        svc = self.store.view().get_service(self.service_id)
        return svc if svc is not None and self.targets(svc) else None

    # -- the state machine ----------------------------------------------------------------------

    async def run(self) -> None:
        watcher = self.store.watch("task", filter=lambda e: e.obj.service_id == self.service_id)
        consumer = asyncio.create_task(self._consume(watcher))
        try:
            if self.template_changed:
                await self._status(self._mark_started)
            queue = list(self.slots)
            n = self.cfg.parallelism or len(queue)
            work = asyncio.gather(*(self._worker(queue) for _ in range(min(n, len(queue)))))
            if await self._until_stopped(work):
                return await self._on_failure()
            if await self._until_stopped(asyncio.ensure_future(self.loop.sleep(self.cfg.monitor))):
                return await self._on_failure()
            await self._status(self._mark_completed)
        except Superseded:
            pass
        finally:
            consumer.cancel()
            watcher.close()

    async def _until_stopped(self, fut) -> bool:
        """Await `fut` unless a failure stops the rollout first; True if stopped."""
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({fut, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not fut.done():
                fut.cancel()
                try:
                    await fut
                except (asyncio.CancelledError, Exception):
                    pass
        if not self._stop.is_set() and fut.exception() is not None:
            raise fut.exception()
        return self._stop.is_set()

    async def _worker(self, queue: list) -> None:
        while queue and not self._stop.is_set():
            key = queue.pop(0)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                new_id = await self._replace(key)
                if new_id is not None:
                    running = await self._wait_settled(new_id)
                    if running and self.cfg.order == UpdateOrder.START_FIRST:
                        await self._retire_others(key, new_id)
            finally:
                self.in_flight -= 1
            if self.cfg.delay and queue and not self._stop.is_set():
                await self.loop.sleep(self.cfg.delay)

    async def _replace(self, key) -> str | None:
        """One slot: keep an up-to-date runnable task if there is one, else start a new one.
        Returns the new task's ID (None when nothing new was started)."""
        for _ in range(8):
            view = self.store.view()
            svc = view.get_service(self.service_id)
            if svc is None or not self.targets(svc):
                raise Superseded
            tasks = slot_tasks(view, svc, key)
            if not tasks:
                return None  # the slot emptied meanwhile; the orchestrator fills it
            now = self.loop.clock()
            tx = Transaction(now)
            fresh = [t for t in tasks if runnable(t) and is_up_to_date(t, svc)]
            if fresh:
                keep = max(fresh, key=lambda t: t.status.state == TaskState.RUNNING)
                for t in tasks:
                    if t.id != keep.id:
                        tx.update(_shut(t))
                new_id = None
            else:
                if is_global(svc):
                    if not keeps(svc, view.get_node(key)):
                        return None
                    new = new_task(svc, self.loop.new_id(), now, node_id=key)
                else:
                    new = new_task(svc, self.loop.new_id(), now, slot=key)
                for t in tasks:
                    if self.cfg.order != UpdateOrder.START_FIRST or not runnable(t):
                        tx.update(_shut(t))
                tx.create(new)
                new_id = new.id
                self.started[new_id] = None
                self._settled[new_id] = asyncio.Event()
            if not tx.ops:
                return None
            try:
                await self.loop.proposer.propose(tx)
                return new_id
            except StoreError as err:
                log.debug("update of %s slot %s conflicted (%s); retrying", self.service_id, key, err)
                if new_id is not None:
                    self.started.pop(new_id, None)
                    self._settled.pop(new_id, None)
        return None

    async def _retire_others(self, key, keep_id: str) -> None:
        for _ in range(8):
            view = self.store.view()
            svc = view.get_service(self.service_id)
            if svc is None:
                return
            tx = Transaction(self.loop.clock())
            for t in slot_tasks(view, svc, key):
                if t.id != keep_id:
                    tx.update(_shut(t))
            if not tx.ops:
                return
            try:
                await self.loop.proposer.propose(tx)
                return
            except StoreError:
                continue

    async def _wait_settled(self, task_id: str) -> bool:
        """Until the new task runs (True) or gives up: fails, is stopped or deleted (False)."""
        t = self.store.view().get_task(task_id)
        if t is not None:
            self._observe(t)
        await self._settled[task_id].wait()
        t = self.store.view().get_task(task_id)
        return t is not None and t.status.state == TaskState.RUNNING and runnable(t)

    # -- watching the new tasks -------------------------------------------------------------------

    async def _consume(self, watcher) -> None:
        try:
            while True:
                e = await watcher.get()
                if e.new is None:
                    ev = self._settled.get(e.old.id)
                    if ev is not None:
                        ev.set()
                    continue
                self._observe(e.new)
        except WatchClosed:
            # Lost events: re-check the tasks we wait for from the store and keep going
            # without failure detection rather than stall.
            view = self.store.view()
            for tid, ev in self._settled.items():
                t = view.get_task(tid)
                if t is None or t.status.state >= TaskState.RUNNING or not runnable(t):
                    ev.set()

    def _observe(self, t) -> None:
        if t.id not in self.started:
            return
        now = self.loop.clock()
        state = t.status.state
        if state == TaskState.RUNNING and self.started[t.id] is None:
            self.started[t.id] = now
        if state >= TaskState.RUNNING or not runnable(t):
            self._settled[t.id].set()
        if state.terminal and runnable(t) and t.id not in self.failures:
            since = self.started[t.id]
            if since is None or now - since <= timedelta(seconds=self.cfg.monitor):
                self._failure(t.id)

    def _failure(self, task_id: str) -> None:
        self.failures.add(task_id)
        if self.cfg.failure_action == FailureAction.CONTINUE:
            return
        if len(self.failures) / max(1, len(self.slots)) > self.cfg.max_failure_ratio:
            if self._failed_task is None:
                self._failed_task = task_id
            self._stop.set()

    # -- status -----------------------------------------------------------------------------------

    async def _on_failure(self) -> None:
        tid = self._failed_task or "?"
        if self.rollback or self.cfg.failure_action == FailureAction.PAUSE:
            await self._status(lambda s, now: _pause(s, paused_message(tid, self.rollback), self.rollback))
        elif self.cfg.failure_action == FailureAction.ROLLBACK:
            await self._status(lambda s, now: _start_rollback(s, tid, now))

    def _mark_started(self, svc: Service, now: datetime) -> None:
        st = svc.update_status
        if st is not None and st.state in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
            return
        svc.update_status = UpdateStatus(state=UpdateState.UPDATING, started_at=now, message=IN_PROGRESS)

    def _mark_completed(self, svc: Service, now: datetime) -> None:
        st = svc.update_status
        if st is None or st.state not in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
            return
        if st.state == UpdateState.ROLLBACK_STARTED:
            st.state, st.message = UpdateState.ROLLBACK_COMPLETED, ROLLBACK_COMPLETED
        else:
            st.state, st.message = UpdateState.COMPLETED, COMPLETED
        st.completed_at = now

    async def _status(self, mutate) -> None:
        """Apply `mutate(service_clone, now)` to the service, if it is still this rollout's,
        re-reading on conflicts (the API or another loop may have written it meanwhile)."""
        for _ in range(8):
            svc = self._current()
            if svc is None:
                return
            c = svc.clone()
            before = c.model_dump()
            now = self.loop.clock()
            mutate(c, now)
            if c.model_dump() == before:
                return
            try:
                await self.loop.proposer.propose(Transaction(now).update(c))
                return
            except StoreError:
                continue


def _shut(t):
    c = t.clone()
    if c.desired_state < TaskState.SHUTDOWN:
        c.desired_state = TaskState.SHUTDOWN
    return c


def _pause(svc: Service, message: str, rollback: bool) -> None:
    st = svc.update_status or UpdateStatus()
    st.state = UpdateState.ROLLBACK_PAUSED if rollback else UpdateState.PAUSED
    st.message = message
    svc.update_status = st


def _start_rollback(svc: Service, task_id: str, now: datetime) -> None:
    if svc.previous_spec is None:
        _pause(svc, paused_message(task_id, False), False)
        return
    st = svc.update_status or UpdateStatus(started_at=now)
    st.state = UpdateState.ROLLBACK_STARTED
    st.message = rolled_back_message(task_id)
    st.completed_at = None
    svc.update_status = st
    svc.spec, svc.previous_spec = svc.previous_spec, None
