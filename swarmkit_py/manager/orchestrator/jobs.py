"""The job orchestrator: services that run to completion (`--mode replicated-job` and
`--mode global-job`, swarmkit's manager/orchestrator/jobs).

A job's tasks belong to one *iteration* (Service.JobStatus.JobIteration; each update of the
service starts the next, so `docker service update --force job` runs it again). For the
current iteration:

- replicated job: slots 0..TotalCompletions-1 (numbered from 0 as in swarmkit: the docker
  CLI's job progress walks slots from 0). A slot is done once a task in it completes (exit 0);
  at most MaxConcurrent slots run at once; free slots are filled lowest first as running ones
  complete, until every slot holds a task.
- global job: one task on every eligible node (ready, active, matching the constraints),
  including nodes that join later; a node that is drained or stops matching has its unfinished
  task shut down, as for a global service.

A task that exits 0 is never restarted: the restart supervisor (restart.py) marks it finished
(desired `complete`, which keeps its slot held) whatever the restart condition; one that
fails is restarted per its restart policy in the same slot or on the same node, and one whose
policy gives up leaves its slot held and not complete, so the job stops short of its total,
visibly, rather than retrying forever. Tasks of an older iteration are shut down (running
ones stop; finished ones become history the reaper may trim).

Tasks of a deleted job are the replicated and global orchestrators' to remove (by slot or
node, as for any service), tasks of `down` nodes the node-failure loop's; this loop then
fills the slot again (replicated) or leaves the node alone until it is back (global).
"""

from __future__ import annotations

from ...store import Service, TaskState, View
from .loop import Batch, StoreLoop, touched
from .placement import PLACE, per_node
from .slots import holds, runnable
from .taskinit import new_task


def iteration(service: Service) -> int:
    return service.job_status.job_iteration.index if service.job_status is not None else 0


def current(task, service: Service) -> bool:
    """Does the task belong to its job's current iteration?"""
    return task.job_iteration is not None and task.job_iteration.index == iteration(service)


class JobOrchestrator(StoreLoop):
    name = "jobs"
    kinds = ("service", "task", "node")

    def reconcile(self, view: View, batch: Batch, events) -> None:
        if events is None or any(e.kind == "node" for e in events):
            sids = {s.id for s in view.services() if s.spec.mode.is_job}
        else:
            sids = set()
        if events is not None:
            sids |= touched(events, "service", lambda s: s.id)
            sids |= touched(events, "task", lambda t: t.service_id)
        for sid in sids:
            svc = view.get_service(sid)
            if svc is not None and svc.spec.mode.is_job:
                self._job(view, batch, svc)

    def _job(self, view: View, batch: Batch, svc: Service) -> None:
        tasks = []
        for t in view.tasks(service_id=svc.id):
            if current(t, svc):
                tasks.append(t)
            elif t.desired_state < TaskState.SHUTDOWN:
                batch.updated(t).desired_state = TaskState.SHUTDOWN
        if svc.spec.mode.replicated_job is not None:
            self._replicated(batch, svc, tasks)
        else:
            self._global(view, batch, svc, tasks)

    def _replicated(self, batch: Batch, svc: Service, tasks) -> None:
        job = svc.spec.mode.replicated_job
        total = job.total_completions or 0
        concurrent = job.max_concurrent if job.max_concurrent is not None else 1
        occupied: set[int] = set()
        running: set[int] = set()
        for t in tasks:
            if t.slot is None or not holds(t):
                continue
            occupied.add(t.slot)
            if runnable(t) and t.status.state != TaskState.COMPLETE:
                running.add(t.slot)
        room = concurrent - len(running)
        now = self.clock()
        for slot in range(total):
            if room <= 0:
                break
            if slot not in occupied:
                batch.create(new_task(svc, self.new_id(), now, slot=slot))
                room -= 1

    def _global(self, view: View, batch: Batch, svc: Service, tasks) -> None:
        held: dict[str, list] = {}
        for t in tasks:
            if t.node_id is not None and holds(t):
                held.setdefault(t.node_id, []).append(t)
        now = self.clock()
        for node_id, node_tasks, verdict in per_node(view, svc, held):
            if verdict == PLACE:
                batch.create(new_task(svc, self.new_id(), now, node_id=node_id))
            else:
                # a task that finished stays finished: retiring it would run it again
                # when the node qualifies once more
                for t in node_tasks:
                    if runnable(t):
                        batch.updated(t).desired_state = TaskState.SHUTDOWN


__all__ = ["JobOrchestrator", "current", "iteration"]
