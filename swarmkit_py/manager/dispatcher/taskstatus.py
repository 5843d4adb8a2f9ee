"""``dispatcher.task_status``: workers report what really happened to their tasks.

Request (worker -> leader): ``{"session_id": str, "updates": [update, ...]}``, each update as
``proto/dispatcher.py`` reads it (``parse_status_update``).

Answer: ``{"written": int, "skipped": [{"task_id": str, "reason": str}]}``; ``reason`` is
``not_found`` (task deleted meanwhile: nothing to do), ``backwards`` or ``unchanged``.

Rules (docs/design/tasks.md): the worker writes only states from ``accepted`` on; observed
state never moves backwards (a late report from before a restart must not revive a task); a
report that changes nothing stored is not written. A task of another node refuses the whole
call with ``permission_denied`` and nothing is written, as in swarmkit: a worker never has a
legitimate reason to report another node's task.

Writes are group-committed like node status (status.py): the updates of the calls arriving
while a proposal is in flight are written together, in entries of at most ``MAX_TX_OPS``
tasks proposed at once. A busy cluster with hundreds of workers thus costs a handful of Raft
entries per round trip, not one per container event, and no entry is so large that applying
it holds a manager's loop for long. A task's update is written or refused with the others of
its entry: an entry refused for a conflict is rebuilt from a fresh read, the rest stay written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...proto import INVALID_ARGUMENT, parse_status_update
from ...rpc import RpcError
from ...store import SequenceError, Transaction
from ...store.objects import Task, TaskState, TaskStatus
from ..proposer import Proposer
from .groupcommit import MAX_CONFLICT_RETRIES, GroupCommitter

log = logging.getLogger(__name__)

MAX_UPDATES = 10_000
MAX_TX_OPS = 500
"""Task updates per Raft entry (as the scheduler's); a larger batch is several entries."""

WORKER_STATES = frozenset(
    {
        TaskState.ACCEPTED,
        TaskState.PREPARING,
        TaskState.READY,
        TaskState.STARTING,
        TaskState.RUNNING,
        TaskState.COMPLETE,
        TaskState.SHUTDOWN,
        TaskState.FAILED,
        TaskState.REJECTED,
    }
)
"""The observed states a worker may write (tasks.md: ``accepted`` and later, never
``orphaned``, which only the orchestrator decides)."""


class BadUpdate(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    task_id: str
    status: TaskStatus

    @classmethod
    def parse(cls, raw: Any) -> StatusUpdate:
        """Validate one wire update; raises BadUpdate with a message for the caller."""
        try:
            task_id, status = parse_status_update(raw)
        except ValueError as e:
            raise BadUpdate(str(e)) from None
        if status.state not in WORKER_STATES:
            raise BadUpdate(f"task {task_id}: a worker cannot report state {status.state}")
        return cls(task_id, status)


def parse_updates(params: Mapping[str, Any]) -> list[StatusUpdate]:
    raw = params.get("updates")
    if not isinstance(raw, list) or len(raw) > MAX_UPDATES:
        raise RpcError(INVALID_ARGUMENT, f"updates must be a list of at most {MAX_UPDATES}")
    try:
        return [StatusUpdate.parse(u) for u in raw]
    except BadUpdate as e:
        raise RpcError(INVALID_ARGUMENT, str(e)) from None


def apply_update(task: Task, status: TaskStatus) -> tuple[Task | None, str]:
    """``(updated task, "")`` or ``(None, reason)`` when nothing should be written."""
    old = task.status
    if status.state < old.state:
        return None, "backwards"
    if (
        status.state == old.state
        and status.message == old.message
        and status.err == old.err
        and status.container_status == old.container_status
    ):
        return None, "unchanged"
    # A shallow copy with the reported status (parsed from this call, owned by nobody else):
    # the proposer only encodes it, and the deep copy of each task (its whole spec) was 10 %
    # of the leader's CPU during a 10,000-task fill (py-spy, issue 13).
    return task.model_copy(update={"status": status}), ""


class TaskStatusWriter(GroupCommitter):
    """Group commit of status updates; ``submit(updates)`` resolves to the call's answer.

    Each call's updates are validated (node ownership) and written together; if an earlier
    call's batch is in flight they wait and join the next batch. For two updates of the same
    task in one batch the later wins (the worker reports in order, last state wins).
    """

    task_name = "dispatcher-task-status-writer"

    def __init__(self, proposer: Proposer) -> None:
        super().__init__(proposer)
        self._queue: list[tuple[list[StatusUpdate], asyncio.Future]] = []
        self.tasks_written = 0

    def submit(self, updates: list[StatusUpdate]) -> asyncio.Future:
        return self._submit(updates)

    def _enqueue(self, item, fut: asyncio.Future) -> None:
        self._queue.append((item, fut))

    def _take(self) -> list:
        batch, self._queue = self._queue, []
        return batch

    def _requeue(self, batch: list) -> None:
        self._queue[:0] = batch

    def _fail_queued(self, reason: BaseException) -> None:
        queue, self._queue = self._queue, []
        for _, fut in queue:
            if not fut.done():
                fut.set_exception(reason)

    async def _write(self, batch: list[tuple[list[StatusUpdate], asyncio.Future]]) -> None:
        latest: dict[str, StatusUpdate] = {}
        for updates, _ in batch:
            for u in updates:
                latest[u.task_id] = u
        outcome: dict[str, str] = {}
        todo = list(latest.values())
        for _attempt in range(MAX_CONFLICT_RETRIES):
            view = self._proposer.store.view()
            chunks: list[tuple[Transaction, list[StatusUpdate]]] = []
            for u in todo:
                task = view.get_task(u.task_id)
                if task is None:
                    outcome[u.task_id] = "not_found"
                    continue
                new, reason = apply_update(task, u.status)
                outcome[u.task_id] = reason
                if new is None:
                    continue
                if not chunks or len(chunks[-1][0]) >= MAX_TX_OPS:
                    chunks.append((Transaction(handed_over=True), []))  # never touched once proposed
                chunks[-1][0].update(new)
                chunks[-1][1].append(u)
            # Entries of at most MAX_TX_OPS tasks, proposed together: a round of reports from
            # a thousand nodes is thousands of updates, and one entry that size held every
            # member's loop while it was decoded and applied (an entry is never split).
            results = await asyncio.gather(*(self._proposer.propose(tx) for tx, _ in chunks),
                                           return_exceptions=True)
            todo = []
            for (tx, updates), result in zip(chunks, results, strict=True):
                if isinstance(result, SequenceError):
                    # An orchestrator changed one of these tasks (desired state) meanwhile:
                    # that entry was refused as a whole; its updates go again on a fresh read.
                    todo.extend(updates)
                elif isinstance(result, BaseException):
                    _fail(batch, result)
                    return
                else:
                    self.transactions += 1
                    self.tasks_written += len(tx)
            if not todo:
                break
            log.debug("task status batch conflicted; retrying %d updates with a fresh read", len(todo))
        else:
            _fail(batch, SequenceError("task status update kept conflicting with other writes"))
            return
        for updates, fut in batch:
            if fut.done():
                continue
            ids = list(dict.fromkeys(u.task_id for u in updates))
            skipped = [{"task_id": i, "reason": outcome[i]} for i in ids if outcome[i]]
            fut.set_result({"written": len(ids) - len(skipped), "skipped": skipped})


def _fail(batch: list[tuple[list[StatusUpdate], asyncio.Future]], exc: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(exc)
