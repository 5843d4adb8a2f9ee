"""Task status reports to the dispatcher: batched, retried until delivered, last state wins.

Why this shape: container events come in bursts (a set of twenty tasks starting passes each
through four states within a second), and the leader may be away (an election, a network
blip) exactly when they happen. So every report lands in a per-task slot holding only the
newest state; a sender drains all slots into one ``dispatcher.task_status`` call; a failed
call puts its updates back (unless a newer one took the slot) and is retried after a back-off
or at once when a session reopens (``kick``). A report never moves a task backwards, here or
on the manager, so a late step that finishes after a shutdown cannot undo it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ...background import Background
from ...proto import INVALID_ARGUMENT, PERMISSION_DENIED, status_update
from ...rpc import RpcError
from ...store.objects import TaskStatus

log = logging.getLogger(__name__)

Send = Callable[[list[dict[str, Any]]], Awaitable[Any]]

# Errors that retrying cannot fix: the batch is dropped (and logged).
FATAL_CODES = frozenset({PERMISSION_DENIED, INVALID_ARGUMENT})
MAX_BATCH = 500


class NotConnected(Exception):
    """No dispatcher session right now; the reporter waits for one."""


class StatusReporter:
    def __init__(
        self,
        send: Send,
        *,
        coalesce: float = 0.005,
        retry_initial: float = 0.1,
        retry_max: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._send = send
        self.coalesce = coalesce
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._clock = clock
        self._latest: dict[str, TaskStatus] = {}
        self._pending: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._kick = asyncio.Event()
        self._loop = Background("worker-status-reporter", self._run)
        self.calls = 0
        self.dropped = 0

    def report(self, task_id: str, status: TaskStatus) -> bool:
        """Queue ``status``; False when it is stale (behind or equal to the last one)."""
        last = self._latest.get(task_id)
        if last is not None and (status.state < last.state or status == last):
            return False
        self._latest[task_id] = status
        self._pending.pop(task_id, None)  # re-inserted last: reports go out in event order
        self._pending[task_id] = status_update(task_id, status, self._clock())
        self._wake.set()
        return True

    def last(self, task_id: str) -> TaskStatus | None:
        return self._latest.get(task_id)

    def forget(self, keep: set[str]) -> None:
        """Drop memory of tasks outside ``keep`` that have nothing left to send."""
        for task_id in [t for t in self._latest if t not in keep and t not in self._pending]:
            del self._latest[task_id]

    def kick(self) -> None:
        """A session (re)opened: retry undelivered reports now."""
        self._kick.set()
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.coalesce)
            while self._pending:
                ids = list(self._pending)[:MAX_BATCH]
                batch = {t: self._pending.pop(t) for t in ids}
                self._kick.clear()
                try:
                    self.calls += 1
                    await self._send(list(batch.values()))
                    failures = 0
                except RpcError as e:
                    if e.code in FATAL_CODES:
                        self.dropped += len(batch)
                        log.error("dispatcher refused %d task reports: %s", len(batch), e)
                        continue
                    failures = await self._back_off(batch, failures, e)
                except (NotConnected, OSError, TimeoutError) as e:
                    failures = await self._back_off(batch, failures, e)

    async def _back_off(self, batch: dict[str, dict[str, Any]], failures: int, err) -> int:
        for task_id, update in batch.items():
            if task_id not in self._pending:
                self._pending[task_id] = update
        delay = min(self.retry_max, self.retry_initial * 2**failures)
        log.info("task reports not delivered (%s); retrying in %.2fs", err, delay)
        try:
            async with asyncio.timeout(delay):
                await self._kick.wait()
        except TimeoutError:
            pass
        return failures + 1
