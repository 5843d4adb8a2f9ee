"""Group commit of dispatcher writes: many callers, one transaction per batch.

Node status changes and task status reports arrive far faster than Raft commits one
transaction; callers queue their change and get a future, and a single writer task proposes
everything queued since its last proposal at once. The two writers differ only in how they
queue and write a batch, which subclasses supply.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..proposer import Proposer

MAX_CONFLICT_RETRIES = 5


class GroupCommitter:
    task_name = "dispatcher-group-commit"

    def __init__(self, proposer: Proposer) -> None:
        self._proposer = proposer
        self._task: asyncio.Task | None = None
        self._closed: BaseException | None = None
        self.transactions = 0
        """Proposals made (for metrics and for the tests that count writes)."""

    # -- what a subclass provides ---------------------------------------------------------------
    def _enqueue(self, item: Any, fut: asyncio.Future) -> None:
        raise NotImplementedError

    def _take(self) -> Any:
        """Everything queued, as one batch (empties the queue); falsy when nothing is."""
        raise NotImplementedError

    def _requeue(self, batch: Any) -> None:
        raise NotImplementedError

    def _fail_queued(self, reason: BaseException) -> None:
        raise NotImplementedError

    async def _write(self, batch: Any) -> None:
        raise NotImplementedError

    # -- the shared mechanism -------------------------------------------------------------------
    def _submit(self, item: Any) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if self._closed is not None:
            fut.set_exception(self._closed)
            return fut
        self._enqueue(item, fut)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.task_name)
        return fut

    async def close(self, reason: BaseException) -> None:
        """Stop writing; queued changes fail with ``reason`` (the caller lost leadership)."""
        self._closed = reason
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._fail_queued(reason)

    async def _run(self) -> None:
        # Yield once so that submissions made in the same loop iteration share the batch.
        await asyncio.sleep(0)
        while batch := self._take():
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                self._requeue(batch)
                raise
