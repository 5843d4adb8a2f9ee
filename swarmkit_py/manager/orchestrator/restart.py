"""The restart supervisor: a task that stopped while it should be running is replaced per its
restart policy.

Trigger: observed state terminal (`complete`, `failed`, `rejected`, or `shutdown` nobody
asked for) while desired `running`. Then, by the task's own `RestartPolicy`:
- condition `none`, or `on-failure` after a clean exit (`complete`), or `max_attempts`
  restarts already made within `window` (or ever, without a window): the task is left
  stopped, desired `complete` (it keeps its slot, see slots.py);
- otherwise, once `delay` (default 5 s; none on a drained node, as in Swarm) has passed since
  the task stopped: in one transaction the old task becomes desired `shutdown` and a new one
  (the service's current TaskTemplate) takes the same slot, or the same node for a global
  service.

During the delay the failed task keeps desired `running` and so keeps its slot: the
replicated orchestrator does not refill it, and the delay is just a timer here (no task is
created early in a "ready" state as Swarm does, because the worker contract knows only
running/shutdown/remove). The delay counts from the task's status timestamp, so a leader
change does not restart the clock. Restart history (for max_attempts) is kept in memory per
slot, as in Swarm, and forgotten when the slot's spec changes.

Jobs (jobs.py): a job's task that exits 0 is finished whatever the condition (`any` reads as
`on-failure`, as in swarmkit: restarting a completed job would be nonsense); a failed one is
replaced in its slot (replicated job) or on its node (global job), in the job's current
iteration. Tasks of an older iteration are left to the job orchestrator, which retires them.

Not handled here: tasks on `down` nodes (node-failure loop, no delay), slots above Replicas
(the replicated orchestrator shuts them down), tasks of deleted services.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from ...store import NodeAvailability, RestartCondition, TaskState, View
from .defaults import restart_policy
from .jobs import current
from .loop import Batch, StoreLoop
from .placement import keeps
from .slots import FINISHED, is_global, is_job, is_replicated, node_down, replicas, runnable
from .taskinit import new_task
from .uptodate import spec_key


def needs_restart(t) -> bool:
    return runnable(t) and t.status.state.terminal


class RestartSupervisor(StoreLoop):
    name = "restart"
    kinds = ("task", "node")

    def __init__(self, proposer, **kw) -> None:
        super().__init__(proposer, **kw)
        self._seen: dict[str, datetime] = {}
        self._history: dict[tuple, tuple[str, list[datetime]]] = {}
        self._pending: list[tuple[tuple, str]] = []

    def reconcile(self, view: View, batch: Batch, events) -> None:
        self._pending = []
        now = self.clock()
        if events is None:
            candidates = view.find("task", desired_state=TaskState.RUNNING, where=needs_restart)
            live = {t.id for t in candidates}
            self._seen = {k: v for k, v in self._seen.items() if k in live}
        else:
            ids = {e.obj.id for e in events if e.kind == "task"} | {k for k in self.fired if isinstance(k, str)}
            for e in events:
                if e.kind == "node" and e.new is not None:
                    ids.update(t.id for t in view.tasks(node_id=e.new.id) if needs_restart(t))
            candidates = []
            for tid in ids:
                t = view.get_task(tid)
                if t is not None and needs_restart(t):
                    candidates.append(t)
                else:
                    self._seen.pop(tid, None)
                    self.cancel_timer(tid)
        for t in candidates:
            self._consider(view, batch, t, now)

    def _consider(self, view: View, batch: Batch, t, now: datetime) -> None:
        svc = view.get_service(t.service_id)
        node = view.get_node(t.node_id) if t.node_id else None
        if svc is None or node_down(node) or (t.node_id and node is None):
            return
        if is_replicated(svc) and (t.slot is None or t.slot > replicas(svc)):
            return
        job = is_job(svc)
        if job and not current(t, svc):
            return
        slot_tasks = _slot_tasks(view, t)
        if any(o.id != t.id and runnable(o) and o.job_iteration == t.job_iteration
               for o in slot_tasks):
            # Another task already runs this slot (a start-first update in flight): this one
            # is simply retired.
            batch.updated(t).desired_state = TaskState.SHUTDOWN
            return
        policy = restart_policy(t)
        key = (t.service_id, t.slot if t.slot is not None else t.node_id)
        if not self._should_restart(t, policy, key, now, job):
            batch.updated(t).desired_state = FINISHED
            return
        drained = node is not None and node.spec.availability == NodeAvailability.DRAIN
        delay = 0.0 if drained else policy.delay
        seen = self._seen.setdefault(t.id, now)
        stopped = t.status.timestamp
        base = min(seen, stopped) if stopped is not None else seen
        due = base + timedelta(seconds=delay)
        if due > now:
            self.wake_at(t.id, due)
            return
        batch.updated(t).desired_state = TaskState.SHUTDOWN
        if is_global(svc) or (job and t.slot is None):
            if not keeps(svc, node):
                return  # the global orchestrator places a task when the node qualifies again
            batch.create(new_task(svc, self.new_id(), now, node_id=t.node_id))
        else:
            batch.create(new_task(svc, self.new_id(), now, slot=t.slot))
        if policy.max_attempts:
            self._pending.append((key, _spec_id(svc.spec.task_template)))

    def _should_restart(self, t, policy, key, now: datetime, job: bool = False) -> bool:
        if policy.condition == RestartCondition.NONE:
            return False
        if (job or policy.condition == RestartCondition.ON_FAILURE) and \
                t.status.state == TaskState.COMPLETE:
            return False
        if not policy.max_attempts:
            return True
        spec_id, times = self._history.get(key, ("", []))
        if spec_id != _spec_id(t.spec):
            return True  # the slot's spec changed: past failures do not count against it
        if policy.window:
            since = now - timedelta(seconds=policy.window)
            times = [x for x in times if x > since]
            self._history[key] = (spec_id, times)
        return len(times) < policy.max_attempts

    def committed(self) -> None:
        now = self.clock()
        for key, spec_id in self._pending:
            old_spec, times = self._history.get(key, ("", []))
            if old_spec != spec_id:
                times = []
            self._history[key] = (spec_id, [*times, now])
        self._pending = []
        for tid in list(self._seen):
            if tid not in self._timers and tid not in self.due:
                # Replaced or retired in this pass; forget when it first failed.
                self._seen.pop(tid, None)


def _slot_tasks(view: View, t):
    if t.slot is not None:
        return view.tasks(service_id=t.service_id, slot=t.slot)
    return [o for o in view.tasks(node_id=t.node_id) if o.service_id == t.service_id] if t.node_id else [t]


def _spec_id(spec) -> str:
    return json.dumps(spec_key(spec), sort_keys=True)
