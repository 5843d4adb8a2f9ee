"""A background task that runs until it is stopped, and says how it died.

Every long-running loop of the agent (control loops on the leader, the worker's session and
reconcile, the certificate renewer) is one of these. Before this module each loop had its own
start/stop pair: some `start`s were coroutines and some not, some `stop`s swallowed whatever the
loop had raised, and a loop that crashed between two `stop`s died without a word while the
agent carried on without it. Here:

- `start()` is a plain function (it only creates a task) and does nothing if already running;
  `stop()` cancels the task and waits for it. Neither raises what the loop raised: the loop's
  own death is handled when it happens, not when somebody later stops it.
- A loop that returns has finished (one-shot jobs such as exporting the CA key).
- A loop that raises has died: the traceback is logged at ERROR, `error` and `deaths` record
  it, and then either it is started again after a capped exponential back-off (the default:
  every loop here rebuilds its state from the store or the engine when it starts, so a
  restart is always safe), or, when `on_death` is given, that is called instead (the agent
  uses it to stop itself for conditions a restart cannot fix, such as an evicted node).

asyncio's own `TaskGroup` does not fit: it cancels every sibling when one fails and has no
restart; a supervised task per loop is what swarmkit's Go code does with goroutines plus
their error channels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("swarmkit_py.background")

RunFn = Callable[[], Awaitable[object]]
OnDeath = Callable[[str, BaseException], object]


class Background:
    """Runs `run()` as one asyncio task named `name` until `stop()`."""

    def __init__(
        self,
        name: str,
        run: RunFn,
        *,
        on_death: OnDeath | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
    ) -> None:
        self.name = name
        self._run = run
        self._on_death = on_death
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._task: asyncio.Task | None = None
        self.error: BaseException | None = None
        """The exception the loop last died of (None if it never did)."""
        self.deaths = 0
        self.finished = False
        """True once `run()` returned on its own (a one-shot job that is done)."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self.finished = False
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        if task is asyncio.current_task():
            return  # stopping itself: the cancellation ends it at its next await
        # gather: the supervisor never raises (it logs), and our own cancellation still
        # propagates to whoever awaits this stop().
        await asyncio.gather(task, return_exceptions=True)

    async def wait(self) -> None:
        """Until the task ends (it finished, or died with `on_death` set, or was stopped)."""
        task = self._task
        if task is not None:
            await asyncio.gather(asyncio.shield(task), return_exceptions=True)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.backoff_initial
        while True:
            began = loop.time()
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.error = exc
                self.deaths += 1
                if self._on_death is not None:
                    log.error("%s died: %s", self.name, exc, exc_info=exc)
                    self._on_death(self.name, exc)
                    return
                if loop.time() - began > self.backoff_max:
                    delay = self.backoff_initial  # it had been running fine for a while
                log.error("%s died; restarting it in %.1fs", self.name, delay, exc_info=exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            self.finished = True
            log.debug("%s finished", self.name)
            return


__all__ = ["Background"]
