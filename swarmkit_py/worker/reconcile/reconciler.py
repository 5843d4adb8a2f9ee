"""Make this node's containers match the assignment set the leader pushes (tasks.md step 4).

Decisions, per task id of the set and per runner we have:

- in the set, desired ``running``, not known here: start it (a runner), unless the store
  already says it ended (the restart supervisor replaces it; we never revive a task) or says
  it was running, which with no container here means the container is gone: ``failed``.
- in the set with desired ``shutdown``/``remove``, or no longer in the set: stop it (the
  controller stops with the task's grace period and removes the container). A task desired
  down that never ran here is simply reported ``shutdown``.
- first set after the worker (re)started: before anything else, list this node's task
  containers; adopt those of tasks in the set, remove the others. Only then: before a set has
  arrived we cannot tell stale containers from live ones, and removing everything on a manager
  blip would kill healthy tasks.

Sets are applied by one loop, newest first (a set that arrives while the previous one is being
applied replaces any not yet applied), so decisions never interleave. A push of changes
(``base`` + ``changed`` + ``removed``, proto/dispatcher.py) is applied to the set held here and
the result is the newest set; one whose ``base`` is not the last push applied (one was missed)
changes nothing, and ``request_full`` asks the leader for the whole set again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ...background import Background
from ...store.objects import TaskState, TaskStatus
from ..executor import EngineUnavailable, Executor
from ..executor.controller import ERR_REMOVED
from .reporter import StatusReporter
from .runner import TaskRunner
from .wire import Assignment, parse_push

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        node_id: str,
        executor: Executor,
        reporter: StatusReporter,
        *,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
    ) -> None:
        self.node_id = node_id
        self._executor = executor
        self._reporter = reporter
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.runners: dict[str, TaskRunner] = {}
        self._finished: set[str] = set()
        self._latest: list[Assignment] | None = None
        self._wake = asyncio.Event()
        self._loop_job = Background(f"reconcile {node_id}", self._loop)
        self.synced = False
        """True once the first set was applied (containers adopted or removed)."""
        self.last_seq: int | None = None
        self.held: dict[str, Assignment] = {}
        """The set as the last push applied left it."""
        self.request_full: Callable[[], None] | None = None
        """Set by the wiring: ask the leader to send the full set again."""
        self._awaiting_full = False
        self.resyncs = 0
        self.applied = 0
        self.adopted: list[str] = []
        self.removed: list[str] = []

    # -- inputs ---------------------------------------------------------------------------

    def on_push(self, params: Any) -> None:
        """The ``dispatcher.assignments`` handler: cheap, the loop does the work."""
        try:
            push = parse_push(params)
        except ValueError as e:
            log.warning("ignoring assignments push: %s", e)
            return
        if push.base is None:
            self.held = {a.task_id: a for a in push.tasks}
            self._awaiting_full = False
        elif self._awaiting_full or push.base != self.last_seq:
            if not self._awaiting_full:
                log.warning("assignment changes on top of push %s, but the last applied is %s: "
                            "asking for the full set", push.base, self.last_seq)
                self._awaiting_full = True
                self.resyncs += 1
                if self.request_full is not None:
                    self.request_full()
            return
        else:
            for task_id in push.removed:
                self.held.pop(task_id, None)
            for a in push.tasks:
                self.held[a.task_id] = a
        self.last_seq = push.seq
        self.update(list(self.held.values()))

    def full_request_failed(self) -> None:
        """The resync call did not get through: the next change that cannot be applied asks
        again (a new session brings a full set anyway)."""
        self._awaiting_full = False

    def update(self, tasks: list[Assignment]) -> None:
        self._latest = tasks
        self._wake.set()

    # -- life -----------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_job.start()

    async def stop(self) -> None:
        """Stop deciding; containers keep running for the next worker process to adopt."""
        await self._loop_job.stop()
        runners, self.runners = self.runners, {}
        await asyncio.gather(*(r.abandon() for r in runners.values()))

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            tasks, self._latest = self._latest, None
            if tasks is None:
                continue
            if not self.synced:
                tasks = await self._first_sync(tasks)
                self.synced = True
            self._reconcile(tasks)
            self.applied += 1

    async def _first_sync(self, tasks: list[Assignment]) -> list[Assignment]:
        """Adopt or remove what an earlier worker process left; returns the set to apply
        (the newest one, if more arrived while the engine was being asked)."""
        failures = 0
        while True:
            try:
                found = await self._executor.containers(self.node_id)
                break
            except EngineUnavailable as e:
                delay = min(self.retry_max, self.retry_initial * 2**failures)
                failures += 1
                log.warning("cannot list task containers (%s); retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                if self._latest is not None:
                    tasks, self._latest = self._latest, None
        wanted = {a.task_id: a for a in tasks}
        for task_id, container in found.items():
            a = wanted.get(task_id)
            if a is None or a.task is None:
                log.info("removing container of task %s: no longer assigned here", task_id)
                try:
                    await self._executor.remove(container)
                    self.removed.append(task_id)
                except EngineUnavailable as e:
                    log.warning("could not remove stale container of %s: %s", task_id, e)
                continue
            log.info("adopting the container of task %s", task_id)
            ctl = self._executor.adopt(a.task, container)
            self._spawn(TaskRunner(a.task, self._executor, self._reporter.report,
                                   controller=ctl, retry_initial=self.retry_initial,
                                   retry_max=self.retry_max))
            self.adopted.append(task_id)
        if self._latest is not None:
            tasks, self._latest = self._latest, None
        return tasks

    def _reconcile(self, tasks: list[Assignment]) -> None:
        wanted = {a.task_id: a for a in tasks}
        for task_id, runner in list(self.runners.items()):
            a = wanted.get(task_id)
            if a is None or a.desired > TaskState.RUNNING:
                runner.stop()
        for a in tasks:
            if a.task_id in self.runners or a.task_id in self._finished:
                continue
            self._decide_new(a)
        self._finished &= set(wanted)
        self._reporter.forget(set(wanted) | set(self.runners))

    def _decide_new(self, a: Assignment) -> None:
        report = self._reporter.report
        if a.state.terminal:
            return  # ended already: nothing to run, nothing to stop
        if a.desired > TaskState.RUNNING:
            report(a.task_id, TaskStatus(state=TaskState.SHUTDOWN, message="shutdown"))
            self._finished.add(a.task_id)
        elif a.task is None:
            report(a.task_id, TaskStatus(state=TaskState.REJECTED, message="rejected",
                                         err=a.error or "bad spec"))
            self._finished.add(a.task_id)
        elif a.state >= TaskState.STARTING:
            # It ran under an earlier worker process, and its container is gone.
            report(a.task_id, TaskStatus(state=TaskState.FAILED, message="started",
                                         err=ERR_REMOVED))
            self._finished.add(a.task_id)
        else:
            self._spawn(TaskRunner(a.task, self._executor, report,
                                   retry_initial=self.retry_initial, retry_max=self.retry_max))

    def _spawn(self, runner: TaskRunner) -> None:
        self.runners[runner.task_id] = runner
        task = runner.start()
        task.add_done_callback(lambda t, r=runner: self._runner_done(r, t))

    def _runner_done(self, runner: TaskRunner, task: asyncio.Task) -> None:
        if self.runners.get(runner.task_id) is runner:
            del self.runners[runner.task_id]
            self._finished.add(runner.task_id)
        if not task.cancelled() and task.exception() is not None:
            log.error("runner of task %s failed", runner.task_id, exc_info=task.exception())
