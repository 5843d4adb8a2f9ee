"""Job orchestrator (replicated-job / global-job): MaxConcurrent and TotalCompletions, exit 0
completes instead of restarting, a failure restarts in the same slot of the same iteration,
a new iteration retires the old one's tasks, a global job reaches nodes that join later."""

from __future__ import annotations

import pytest

from swarmkit_py.manager.orchestrator import (
    GlobalOrchestrator,
    JobOrchestrator,
    ReplicatedOrchestrator,
    RestartSupervisor,
    UpdateSupervisor,
)
from swarmkit_py.store import (
    GlobalJob,
    JobStatus,
    ReplicatedJob,
    Service,
    ServiceMode,
    ServiceSpec,
    TaskState,
    Version,
    new_id,
)
from tests.unit.test_orchestrator_fixtures import Harness, restart, template, until

pytestmark = pytest.mark.asyncio

LOOPS = (ReplicatedOrchestrator, GlobalOrchestrator, JobOrchestrator, RestartSupervisor,
         UpdateSupervisor)


async def add_job(h, mode: ServiceMode, policy=None) -> str:
    tpl = template()
    tpl.restart_policy = policy
    svc = Service(id=new_id(h.rng), spec=ServiceSpec(name="job", task_template=tpl, mode=mode),
                  job_status=JobStatus(last_execution=h.clock()))
    await h.write(svc, create=True)
    return svc.id


def live(h, sid):
    return [t for t in h.runnable(sid) if t.status.state != TaskState.COMPLETE]


async def finish(h, sid, state=TaskState.COMPLETE):
    """Every running task of the job exits (0 for COMPLETE, non-zero for FAILED)."""
    for t in h.running(sid):
        await h.set_task(t.id, state)


async def test_replicated_job_runs_total_completions_at_most_max_concurrent_at_once():
    h = Harness()
    await h.add_node("n1")
    await h.start(*LOOPS)
    sid = await add_job(h, ServiceMode(replicated_job=ReplicatedJob(max_concurrent=2,
                                                                     total_completions=5)))
    await until(lambda: len(h.runnable(sid)) == 2, what="two concurrent tasks")
    assert sorted(t.slot for t in h.runnable(sid)) == [0, 1]
    assert all(t.job_iteration == Version(index=0) for t in h.tasks(sid))
    for _ in range(3):
        await h.work()
        await finish(h, sid)
    await until(lambda: sum(t.status.state == TaskState.COMPLETE for t in h.tasks(sid)) == 5,
                what="five completions")
    tasks = h.tasks(sid)
    assert len(tasks) == 5 and sorted(t.slot for t in tasks) == [0, 1, 2, 3, 4]
    # exit 0 is never restarted, whatever the restart condition (default: any)
    assert all(t.desired_state == TaskState.COMPLETE for t in tasks)
    assert live(h, sid) == []
    await h.stop()


async def test_failed_job_task_restarts_in_its_slot_and_gives_up_after_max_attempts():
    h = Harness()
    await h.add_node("n1")
    await h.start(*LOOPS)
    sid = await add_job(h, ServiceMode(replicated_job=ReplicatedJob(max_concurrent=1,
                                                                     total_completions=2)),
                        policy=restart(delay=1, max_attempts=1))
    await until(lambda: len(h.runnable(sid)) == 1)
    await h.work()
    await finish(h, sid, TaskState.FAILED)
    await h.clock.advance(1.1)
    await until(lambda: len(live(h, sid)) == 1 and live(h, sid)[0].status.state
                == TaskState.PENDING, what="a replacement")
    assert [t.slot for t in h.tasks(sid)] == [0, 0]
    await h.work()
    await finish(h, sid, TaskState.FAILED)
    await h.clock.advance(1.1)
    # attempts used up: slot 0 stays held (not complete), slot 1 gets its turn
    await until(lambda: any(t.slot == 1 for t in h.tasks(sid)), what="slot 1 started")
    slot0 = [t for t in h.tasks(sid) if t.slot == 0]
    assert len(slot0) == 2 and all(t.desired_state >= TaskState.COMPLETE for t in slot0)
    await h.stop()


async def test_new_iteration_retires_old_tasks_and_runs_again():
    h = Harness()
    await h.add_node("n1")
    await h.start(*LOOPS)
    sid = await add_job(h, ServiceMode(replicated_job=ReplicatedJob(max_concurrent=2,
                                                                     total_completions=2)))
    await until(lambda: len(h.runnable(sid)) == 2)
    await h.work()
    await h.set_task(h.running(sid)[0].id, TaskState.COMPLETE)  # one done, one still running
    svc = h.service(sid).clone()
    svc.job_status = JobStatus(job_iteration=Version(index=1), last_execution=h.clock())
    svc.spec.task_template.force_update = 1
    await h.write(svc)
    await until(lambda: len([t for t in h.tasks(sid) if t.job_iteration.index == 1]) == 2,
                what="the second iteration's tasks")
    old = [t for t in h.tasks(sid) if t.job_iteration.index == 0]
    assert all(t.desired_state == TaskState.SHUTDOWN for t in old)
    assert h.service(sid).update_status is None  # never a rolling update
    await h.stop()


async def test_global_job_runs_once_per_node_including_later_nodes():
    h = Harness()
    n1 = await h.add_node("n1")
    await h.start(*LOOPS)
    sid = await add_job(h, ServiceMode(global_job=GlobalJob()))
    await until(lambda: len(h.runnable(sid)) == 1)
    await h.work()
    await finish(h, sid)
    await until(lambda: h.tasks(sid)[0].desired_state == TaskState.COMPLETE)
    n2 = await h.add_node("n2")
    await until(lambda: len(h.tasks(sid)) == 2, what="a task for the new node")
    assert {t.node_id for t in h.tasks(sid)} == {n1, n2}
    assert all(t.slot is None for t in h.tasks(sid))
    await h.work()
    await finish(h, sid)
    await until(lambda: all(t.desired_state == TaskState.COMPLETE for t in h.tasks(sid)))
    assert len(h.tasks(sid)) == 2  # completed tasks are not run again
    await h.stop()
