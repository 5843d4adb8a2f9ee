"""Orchestration: the leader loops that turn services into tasks and keep them converged
(swarmkit's manager/orchestrator). docs/design/tasks.md is the contract they follow.

Each loop watches the store and writes its own part, never calling another loop:

- `ReplicatedOrchestrator` (replicated.py): one held task per slot 1..Replicas.
- `GlobalOrchestrator` (global_.py): one task per eligible node.
- `JobOrchestrator` (jobs.py): replicated and global jobs, run to completion per iteration.
- `RestartSupervisor` (restart.py): replaces stopped tasks per their restart policy.
- `NodeFailure` (nodefail.py): replaces tasks of `down` nodes at once; orphans after 24 h.
- `UpdateSupervisor` (update.py, rollout.py): rolling updates and rollbacks, UpdateStatus.
- `TaskReaper` (reaper.py): task history retention and deletion of removed tasks.

Shared pieces: loop.py (watch/pass/batch/retry/timers), taskinit.py (new tasks and names),
uptodate.py (the up-to-date rule, also used by the API's `_up-to-date` filter), slots.py,
plan.py, placement.py, defaults.py (Swarm's defaults), clock.py (injectable time).

Every loop is `Loop(proposer, *, clock=utcnow, sleep=asyncio_sleep, rng=None)` with
`start()` / `async stop()`; `orchestration_loops()` builds the set for
`Manager.add_leader_loop`.
"""

from __future__ import annotations

from .clock import Clock, ManualClock, Sleep, asyncio_sleep
from .global_ import GlobalOrchestrator
from .jobs import JobOrchestrator
from .loop import Batch, StoreLoop
from .nodefail import NodeFailure
from .reaper import TaskReaper
from .replicated import ReplicatedOrchestrator
from .restart import RestartSupervisor
from .taskinit import new_task, task_name
from .update import UpdateSupervisor
from .uptodate import is_dirty, is_up_to_date

LOOP_CLASSES = (
    ReplicatedOrchestrator,
    GlobalOrchestrator,
    JobOrchestrator,
    RestartSupervisor,
    NodeFailure,
    UpdateSupervisor,
    TaskReaper,
)


def orchestration_loops(proposer, **kw) -> list[tuple[str, StoreLoop]]:
    """(name, loop) for every orchestration loop, sharing clock/sleep/rng keyword arguments.
    Register with `manager.add_leader_loop(f"orchestrator-{name}", loop)`;
    `orphan_after` (seconds) goes to the node-failure loop."""
    orphan_after = kw.pop("orphan_after", None)
    loops = []
    for cls in LOOP_CLASSES:
        extra = {"orphan_after": orphan_after} if cls is NodeFailure and orphan_after is not None else {}
        loops.append((cls.name, cls(proposer, **kw, **extra)))
    return loops


__all__ = [
    "LOOP_CLASSES",
    "Batch",
    "Clock",
    "GlobalOrchestrator",
    "JobOrchestrator",
    "ManualClock",
    "NodeFailure",
    "ReplicatedOrchestrator",
    "RestartSupervisor",
    "Sleep",
    "StoreLoop",
    "TaskReaper",
    "UpdateSupervisor",
    "asyncio_sleep",
    "is_dirty",
    "is_up_to_date",
    "new_task",
    "orchestration_loops",
    "task_name",
]
