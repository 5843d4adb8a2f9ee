"""The worker's reconcile with a fake executor: what it starts, stops, adopts and removes,
and what it reports, in which order. No Docker, no sockets."""

from __future__ import annotations

import asyncio
import time

import pytest

from swarmkit_py.rpc import RpcError, RpcUnavailable
from swarmkit_py.store.objects import ContainerStatus, TaskState, TaskStatus
from swarmkit_py.worker.executor import EngineUnavailable
from swarmkit_py.worker.executor.controller import MESSAGES
from swarmkit_py.worker.executor.docker_adapter import container_spec
from swarmkit_py.worker.reconcile import (
    NotConnected,
    Reconciler,
    StatusReporter,
    parse_assignments,
)

S = TaskState
NODE = "node-1"


async def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.002)


class FakeController:
    def __init__(self, ex, task, state=S.ACCEPTED):
        self.ex, self.task, self.state = ex, task, state
        self.err, self.exit_code = "", None
        self.ended = asyncio.Event()
        self.shutdowns = 0

    def status(self):
        return TaskStatus(
            state=self.state, message=MESSAGES.get(self.state, str(self.state)),
            err=self.err or None,
            container_status=ContainerStatus(container_id=f"c-{self.task.id}", pid=42,
                                             exit_code=self.exit_code))

    async def prepare(self):
        self.ex.engine_check()
        self.ex.events.append(("prepare", self.task.id))
        if container_spec(self.task).image == "missing":
            self.state, self.err = S.REJECTED, "No such image: missing"
        else:
            self.state = S.READY
        return self.status()

    async def start(self):
        self.ex.engine_check()
        self.ex.events.append(("start", self.task.id))
        self.state = S.RUNNING
        return self.status()

    async def wait(self):
        await self.ended.wait()
        return self.status()

    def exit(self, code):
        self.exit_code = code
        if self.shutdowns:
            self.state = S.SHUTDOWN
        elif code == 0:
            self.state = S.COMPLETE
        else:
            self.state, self.err = S.FAILED, f"task: non-zero exit ({code})"
        self.ended.set()

    async def shutdown(self, grace=None):
        self.ex.engine_check()
        self.shutdowns += 1
        self.ex.events.append(("shutdown", self.task.id))
        if not self.state.terminal:
            self.state = S.SHUTDOWN
        self.ended.set()
        self.ex.containers_by_task.pop(self.task.id, None)
        return self.status()


class FakeExecutor:
    def __init__(self):
        self.controllers: dict[str, FakeController] = {}
        self.containers_by_task: dict[str, str] = {}
        self.events: list[tuple[str, str]] = []
        self.engine_down = 0

    def engine_check(self):
        if self.engine_down:
            self.engine_down -= 1
            raise EngineUnavailable("docker engine unavailable: fake")

    async def controller(self, task):
        self.engine_check()
        ctl = FakeController(self, task)
        self.controllers[task.id] = ctl
        self.containers_by_task[task.id] = f"c-{task.id}"
        return ctl

    async def containers(self, node_id):
        self.engine_check()
        self.events.append(("list", node_id))
        return dict(self.containers_by_task)

    def adopt(self, task, container):
        self.events.append(("adopt", task.id))
        ctl = FakeController(self, task, S.RUNNING)
        self.controllers[task.id] = ctl
        return ctl

    async def remove(self, container):
        task_id = container.removeprefix("c-")
        self.events.append(("remove", task_id))
        self.containers_by_task.pop(task_id, None)


class Sink:
    """The dispatcher, as far as the reporter can tell: records every call's updates."""

    def __init__(self):
        self.calls: list[list[dict]] = []
        self.fail: Exception | None = None

    async def send(self, updates):
        if self.fail is not None:
            raise self.fail
        self.calls.append(updates)
        return {"written": len(updates), "skipped": []}

    def states(self, task_id):
        return [u["state"] for c in self.calls for u in c if u["task_id"] == task_id]

    def last(self, task_id):
        return [u for c in self.calls for u in c if u["task_id"] == task_id][-1]


def task(task_id, desired="running", state="assigned", image="busybox", **kw):
    return {"id": task_id, "service_id": "svc", "service_name": "web", "slot": 1,
            "node_id": NODE, "desired_state": desired, "state": state,
            "spec": {"ContainerSpec": {"Image": image, "StopGracePeriod": 2_000_000_000}},
            **kw}


def push(rec, *tasks, seq=1):
    rec.on_push({"seq": seq, "tasks": list(tasks)})


class RecordingReporter(StatusReporter):
    """Keeps every state the runners emit, before last-state-wins batching collapses them."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.emitted: list[tuple[str, str]] = []

    def report(self, task_id, status):
        fresh = super().report(task_id, status)
        if fresh:
            self.emitted.append((task_id, str(status.state)))
        return fresh

    def states(self, task_id):
        return [s for t, s in self.emitted if t == task_id]


@pytest.fixture
async def world():
    ex, sink = FakeExecutor(), Sink()
    reporter = RecordingReporter(sink.send, coalesce=0, retry_initial=0.01, retry_max=0.05)
    rec = Reconciler(NODE, ex, reporter, retry_initial=0.01, retry_max=0.05)
    reporter.start()
    rec.start()
    yield ex, sink, rec, reporter
    await rec.stop()
    await reporter.stop()


def rank(state):
    return S(state)


async def test_new_task_started_and_reported_in_order(world):
    ex, sink, rec, reporter = world
    push(rec, task("t1"))
    await wait_until(lambda: "running" in sink.states("t1"), what="t1 running")
    assert reporter.states("t1") == ["accepted", "preparing", "ready", "starting", "running"]
    # What reached the dispatcher: a forward-only subsequence (bursts collapse to the last).
    sent = sink.states("t1")
    assert sent[-1] == "running" and sent == sorted(sent, key=rank) and len(set(sent)) == len(sent)
    assert [e for e in ex.events if e[1] == "t1"] == [("prepare", "t1"), ("start", "t1")]
    assert sink.last("t1")["container_status"]["container_id"] == "c-t1"
    assert container_spec(ex.controllers["t1"].task).stop_grace_period == 2_000_000_000


async def test_desired_shutdown_stops_and_reports(world):
    ex, sink, rec, _ = world
    push(rec, task("t1"))
    await wait_until(lambda: "running" in sink.states("t1"))
    push(rec, task("t1", desired="shutdown", state="running"), seq=2)
    await wait_until(lambda: "shutdown" in sink.states("t1"), what="t1 shutdown")
    assert ("shutdown", "t1") in ex.events
    assert "t1" not in ex.containers_by_task
    await wait_until(lambda: "t1" not in rec.runners, what="runner gone")
    # The same set again (the store has not caught up): nothing is started or reported.
    calls = len(sink.calls)
    push(rec, task("t1", desired="shutdown", state="running"), seq=3)
    await asyncio.sleep(0.05)
    assert len(sink.calls) == calls
    assert ex.controllers["t1"].shutdowns == 1


async def test_absent_from_set_is_stopped(world):
    ex, sink, rec, _ = world
    push(rec, task("t1"), task("t2"))
    await wait_until(lambda: "running" in sink.states("t2"))
    push(rec, task("t2", state="running"), seq=2)
    await wait_until(lambda: "shutdown" in sink.states("t1"))
    assert ex.controllers["t2"].shutdowns == 0


async def test_task_exit_reported_not_restarted(world):
    ex, sink, rec, _ = world
    push(rec, task("ok"), task("bad"))
    await wait_until(lambda: "running" in sink.states("bad") and "running" in sink.states("ok"))
    ex.controllers["ok"].exit(0)
    ex.controllers["bad"].exit(3)
    await wait_until(lambda: "failed" in sink.states("bad") and "complete" in sink.states("ok"))
    assert sink.last("bad")["err"] == "task: non-zero exit (3)"
    assert sink.last("bad")["container_status"]["exit_code"] == 3
    # The set still says desired running (the supervisor has not acted): nothing restarts.
    push(rec, task("ok", state="complete"), task("bad", state="failed"), seq=2)
    await asyncio.sleep(0.05)
    assert [e for e in ex.events if e == ("start", "bad")] == [("start", "bad")]
    # The supervisor shuts it down: the task leaves the set, its container is removed.
    push(rec, task("ok", state="complete"), seq=3)
    await wait_until(lambda: ("shutdown", "bad") in ex.events)
    assert sink.states("bad")[-1] == "failed"  # shutdown would be a backwards move


async def test_nothing_touched_before_first_set_then_adopt_and_remove():
    ex, sink = FakeExecutor(), Sink()
    ex.containers_by_task = {"keep": "c-keep", "stale": "c-stale"}
    reporter = StatusReporter(sink.send, coalesce=0)
    rec = Reconciler(NODE, ex, reporter, retry_initial=0.01)
    reporter.start()
    rec.start()
    try:
        await asyncio.sleep(0.05)
        assert ex.events == []  # no set yet: cannot tell stale from live
        push(rec, task("keep", state="running"), task("new"))
        await wait_until(lambda: "running" in sink.states("new"))
        await wait_until(lambda: "running" in sink.states("keep"))
        assert ex.events[0] == ("list", NODE)
        assert set(ex.events[1:3]) == {("remove", "stale"), ("adopt", "keep")}
        assert ("prepare", "keep") not in ex.events and ("start", "keep") not in ex.events
        assert rec.adopted == ["keep"] and rec.removed == ["stale"]
        assert set(ex.containers_by_task) == {"keep", "new"}
    finally:
        await rec.stop()
        await reporter.stop()


async def test_unknown_task_decisions(world):
    ex, sink, rec, _ = world
    push(rec,
         task("down", desired="shutdown", state="assigned"),   # never ran here
         task("lost", state="running"),                        # ran, container gone
         task("ended", state="failed"),                        # terminal: leave it
         task("bad", image=""))                                # unrunnable spec
    await wait_until(lambda: sink.states("down") and sink.states("lost") and sink.states("bad"))
    assert sink.states("down") == ["shutdown"]
    assert sink.states("lost") == ["failed"]
    assert sink.last("lost")["err"] == "task: container removed"
    assert sink.states("bad") == ["rejected"]
    assert sink.last("bad")["err"] == "task spec has no image"
    await asyncio.sleep(0.05)
    assert sink.states("ended") == []
    assert ex.controllers == {}


async def test_missing_image_rejected(world):
    ex, sink, rec, _ = world
    push(rec, task("t1", image="missing"))
    await wait_until(lambda: "rejected" in sink.states("t1"))
    assert world[3].states("t1") == ["accepted", "preparing", "rejected"]
    assert ("start", "t1") not in ex.events


async def test_engine_unavailable_reported_and_retried(world):
    ex, sink, rec, _ = world
    push(rec)
    await wait_until(lambda: rec.synced)
    ex.engine_down = 2  # the controller, then prepare
    push(rec, task("t1"), seq=2)
    await wait_until(lambda: "running" in sink.states("t1"), what="running after retries")
    errs = [u.get("err", "") for c in sink.calls for u in c if u["task_id"] == "t1"]
    assert any("docker engine unavailable" in e for e in errs)
    assert sink.last("t1").get("err") is None


async def test_reporter_retries_until_reconnect_and_last_state_wins():
    sink = Sink()
    sink.fail = NotConnected("no session")
    r = StatusReporter(sink.send, coalesce=0, retry_initial=10, retry_max=10)
    r.start()
    try:
        for st in (S.ACCEPTED, S.PREPARING, S.STARTING, S.RUNNING):
            r.report("t1", TaskStatus(state=st, message=str(st)))
            await asyncio.sleep(0.01)
        assert not r.report("t1", TaskStatus(state=S.STARTING, message="starting"))  # backwards
        r.report("t2", TaskStatus(state=S.ACCEPTED, message="accepted"))
        await asyncio.sleep(0.02)
        assert sink.calls == [] and r.pending == 2
        sink.fail = None
        r.kick()  # session reopened: no need to wait out the back-off
        await wait_until(lambda: r.pending == 0, timeout=2, what="delivery after kick")
        assert [(u["task_id"], u["state"]) for c in sink.calls for u in c] == [
            ("t1", "running"), ("t2", "accepted")]
    finally:
        await r.stop()


async def test_reporter_retries_unavailable_and_drops_refused():
    sink = Sink()
    sink.fail = RpcUnavailable("leader gone")
    r = StatusReporter(sink.send, coalesce=0, retry_initial=0.01, retry_max=0.02)
    r.start()
    try:
        r.report("t1", TaskStatus(state=S.RUNNING, message="started"))
        await asyncio.sleep(0.05)
        sink.fail = None
        await wait_until(lambda: sink.calls, what="retried delivery")
        sink.fail = RpcError("permission_denied", "not yours")
        r.report("t9", TaskStatus(state=S.RUNNING, message="started"))
        await wait_until(lambda: r.dropped == 1, what="refused batch dropped")
        assert r.pending == 0
    finally:
        await r.stop()


def test_parse_assignments_keeps_good_tasks_next_to_bad_ones():
    seq, tasks = parse_assignments({"seq": 7, "tasks": [task("a"), task("b", image=""), "junk"]})
    assert seq == 7
    assert [(a.task_id, a.task is None) for a in tasks] == [("a", False), ("b", True)]
    with pytest.raises(ValueError):
        parse_assignments({"nope": 1})


async def test_a_stop_during_prepare_ends_the_tasks_life_without_spinning(world):
    """A task told to stop while its container is being created: the controller refuses to
    start it (it is stopping) and returns at once. The runner used to ask again and again
    without ever yielding, which froze the agent's event loop (API, Raft, sessions) for good."""
    ex, sink, rec, _ = world
    gate = asyncio.Event()

    class Stoppable(FakeController):
        starts = 0

        async def prepare(self):
            await gate.wait()
            self.state = S.READY
            return self.status()

        async def start(self):
            Stoppable.starts += 1
            if Stoppable.starts > 100:
                raise RuntimeError("start asked for again and again")
            if self.shutdowns:  # as the real controller: a stopping task is not started
                return self.status()
            return await super().start()

    async def controller(task):
        ctl = Stoppable(ex, task)
        ex.controllers[task.id] = ctl
        return ctl

    ex.controller = controller
    push(rec, task("t1"))
    await wait_until(lambda: "t1" in ex.controllers, what="t1 preparing")
    push(rec, task("t1", desired="shutdown", state="preparing"), seq=2)
    await wait_until(lambda: ex.controllers["t1"].shutdowns, what="the shutdown under way")
    gate.set()
    await wait_until(lambda: "t1" not in rec.runners, what="runner gone")
    assert Stoppable.starts <= 1 and "shutdown" in sink.states("t1")


async def test_changes_apply_on_top_of_the_held_set_and_a_gap_asks_for_the_full_set(world):
    """Incremental pushes (``base`` + ``changed`` + ``removed``): applied to the set held, so
    a task not mentioned keeps running; one on top of a push this worker never applied
    changes nothing and asks once for the full set, which puts everything right."""
    ex, sink, rec, _ = world
    asked = []
    rec.request_full = lambda: asked.append(rec.last_seq)
    push(rec, task("t1"), task("t2"), seq=5)
    await wait_until(lambda: "running" in sink.states("t1") and "running" in sink.states("t2"))
    rec.on_push({"seq": 6, "base": 5, "changed": [task("t3")], "removed": ["t2"]})
    await wait_until(lambda: "running" in sink.states("t3") and "shutdown" in sink.states("t2"))
    assert ex.controllers["t1"].shutdowns == 0 and sorted(rec.held) == ["t1", "t3"]

    # Push 7 was lost: 8 and 9 change nothing; one request for the full set.
    rec.on_push({"seq": 8, "base": 7, "changed": [task("t4")], "removed": ["t1"]})
    rec.on_push({"seq": 9, "base": 8, "changed": [task("t5")], "removed": []})
    await asyncio.sleep(0.05)
    assert asked == [6] and rec.last_seq == 6 and sorted(rec.held) == ["t1", "t3"]
    assert "t4" not in rec.runners and ex.controllers["t1"].shutdowns == 0
    # The full set replaces what is held; changes go on from it.
    push(rec, task("t3", state="running"), task("t4"), task("t5"), seq=9)
    await wait_until(lambda: "running" in sink.states("t5") and "shutdown" in sink.states("t1"))
    rec.on_push({"seq": 10, "base": 9, "changed": [], "removed": ["t5"]})
    await wait_until(lambda: "shutdown" in sink.states("t5"))
    assert sorted(rec.held) == ["t3", "t4"] and asked == [6] and rec.resyncs == 1


def test_a_change_push_must_have_its_parts():
    from swarmkit_py.worker.reconcile.wire import parse_push

    p = parse_push({"seq": 3, "base": 2, "changed": [task("a"), "junk"], "removed": ["b"]})
    assert (p.seq, p.base, [a.task_id for a in p.tasks], p.removed) == (3, 2, ["a"], ["b"])
    for bad in ({"seq": 3, "base": "2", "changed": [], "removed": []},
                {"seq": 3, "base": 2, "removed": []},
                {"seq": 3, "base": 2, "changed": [], "removed": [1]}):
        with pytest.raises(ValueError):
            parse_push(bad)
    assert parse_push({"seq": 1, "tasks": [task("a")]}).base is None
