"""One task's life on this node: prepare, start, wait, and shut down when told.

The runner owns the order of events for its task so that the reports tell the manager the
truth in order: accepted, preparing, starting, running, then complete / failed on exit, or
shutdown when stopped. Steps run one after the other in ``_life``; a stop request does not
cancel a step (a cancelled ``prepare`` could leave a container created behind our back) but
calls the controller's ``shutdown`` alongside it, which the controller is built for, and then
waits for the step to notice.

An unavailable engine is not the task's fault: the state stays, the report carries the reason
in ``err`` so ``docker service ps`` shows it, and the step is retried with a back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ...proto import AssignedTask
from ...store.objects import TaskState, TaskStatus
from ..executor import EngineUnavailable, Executor, TaskController

log = logging.getLogger(__name__)

Report = Callable[[str, TaskStatus], object]
SETTLE = 30.0
"""How long a step may take to notice a shutdown before it is abandoned."""


class TaskRunner:
    def __init__(
        self,
        task: AssignedTask,
        executor: Executor,
        report: Report,
        *,
        controller: TaskController | None = None,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
    ) -> None:
        self.task = task
        self.task_id = task.id
        self._executor = executor
        self._report = report
        self.ctl = controller
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> asyncio.Task:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"task {self.task_id}"
        )
        return self._task

    def stop(self) -> None:
        """Desired shutdown/remove, or gone from the set: stop and remove the container."""
        self._stop.set()

    async def abandon(self) -> None:
        """The worker itself is stopping: leave the container as it is, for adoption."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- internals ------------------------------------------------------------------------

    def _emit(self, status: TaskStatus) -> None:
        self._report(self.task_id, status)

    async def _run(self) -> None:
        life = None
        if not self._stop.is_set():
            life = asyncio.get_running_loop().create_task(self._life())
            stopper = asyncio.get_running_loop().create_task(self._stop.wait())
            try:
                await asyncio.wait({life, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not self._stop.is_set():
                    await life  # the task ended on its own; keep its container until told
                    await stopper
            except asyncio.CancelledError:
                life.cancel()
                stopper.cancel()
                raise
        await self._shutdown()
        if life is not None and not life.done():
            done, _ = await asyncio.wait({life}, timeout=SETTLE)
            if not done:
                log.warning("task %s: a step did not end after shutdown; abandoning it", self.task_id)
                life.cancel()

    async def _life(self) -> None:
        failures = 0
        while True:
            if self._stop.is_set():
                # The shutdown owns the task from here. A step the controller refuses because
                # it is stopping returns at once, and asking again without end never yielded:
                # the agent's whole event loop (API, Raft, sessions) froze.
                return
            try:
                if self.ctl is None:
                    self.ctl = await self._executor.controller(self.task)
                    self._emit(self.ctl.status())  # accepted
                if await self._step(self.ctl):
                    return
                failures = 0
            except EngineUnavailable as e:
                failures = await self._engine_down(e, failures)
                if self._stop.is_set():
                    return
            except Exception as e:
                log.exception("task %s: executor failed", self.task_id)
                self._emit(_with(self._current(), state=TaskState.FAILED, err=f"executor: {e}"))
                return

    async def _step(self, ctl: TaskController) -> bool:
        """Advance one step; True once the task is terminal (its outcome reported)."""
        st = ctl.status()
        if st.state.terminal:
            self._emit(st)
            return True
        if st.state < TaskState.READY:
            self._emit(_with(st, state=TaskState.PREPARING, message="preparing", err=None))
            self._emit(await ctl.prepare())
        elif st.state < TaskState.RUNNING:
            if st.state == TaskState.READY:
                self._emit(_with(st, state=TaskState.STARTING, message="starting", err=None))
            self._emit(await ctl.start())
        else:
            self._emit(st)  # running (adopted, or just started)
            self._emit(await ctl.wait())
        return False

    async def _shutdown(self) -> None:
        failures = 0
        while True:
            try:
                if self.ctl is None:
                    # Never got a controller (engine down all along): nothing was created.
                    self._emit(TaskStatus(state=TaskState.SHUTDOWN, message="shutdown"))
                    return
                self._emit(await self.ctl.shutdown())
                return
            except EngineUnavailable as e:
                failures = await self._engine_down(e, failures, interruptible=False)

    def _current(self) -> TaskStatus:
        if self.ctl is not None:
            return self.ctl.status()
        return TaskStatus(state=TaskState.ACCEPTED, message="accepted")

    async def _engine_down(
        self, err: EngineUnavailable, failures: int, *, interruptible: bool = True
    ) -> int:
        """Report and back off; a stop request cuts the wait short unless we are stopping."""
        self._emit(_with(self._current(), err=str(err)))
        delay = min(self.retry_max, self.retry_initial * 2**failures)
        log.warning("task %s: %s; retrying in %.1fs", self.task_id, err, delay)
        if not interruptible:
            await asyncio.sleep(delay)
            return failures + 1
        try:
            async with asyncio.timeout(delay):
                await self._stop.wait()
        except TimeoutError:
            pass
        return failures + 1


def _with(status: TaskStatus, **changes: object) -> TaskStatus:
    """A copy of ``status`` with ``changes`` (the controller's own status is never modified)."""
    return status.model_copy(update=changes)
