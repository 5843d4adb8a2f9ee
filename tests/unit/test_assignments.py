"""Dispatcher side of tasks: which tasks a node is sent, when sets are pushed, and how
status reports are written (one transaction per call, forward only, own tasks only)."""

from __future__ import annotations

import asyncio
import time

import pytest

from swarmkit_py.manager.dispatcher import Dispatcher, StaticDirectory, params_identity
from swarmkit_py.manager.dispatcher.assignments import assignment_set, is_assigned, observed_only
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.proto import ASSIGNMENTS, ASSIGNMENTS_RESYNC, FEATURE_INCREMENTAL, TASK_STATUS
from swarmkit_py.rpc import HandlerRegistry, RpcClient, RpcError, RpcServer
from swarmkit_py.store import (
    ContainerSpec,
    EndpointSpec,
    Node,
    NodeRole,
    NodeSpec,
    NodeState,
    NodeStatus,
    PortConfig,
    Service,
    ServiceSpec,
    Task,
    TaskSpec,
    TaskState,
    TaskStatus,
    Transaction,
    new_id,
)
from swarmkit_py.worker.executor.docker_adapter import container_name, create_config
from swarmkit_py.worker.reconcile import parse_assignments

LOOPBACK = "127.0.0.1"
S = TaskState


class CountingProposer(LocalProposer):
    def __init__(self, delay: float = 0.0):
        super().__init__()
        self.sizes: list[int] = []
        self.delay = delay

    async def propose(self, tx, timeout=None):
        self.sizes.append(len(tx))
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().propose(tx, timeout)


async def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


def make_task(node_id, state=S.ASSIGNED, desired=S.RUNNING, service_id="svc", slot=1, **kw):
    return Task(
        id=kw.pop("id", new_id()),
        service_id=service_id,
        slot=slot,
        node_id=node_id,
        desired_state=desired,
        status=TaskStatus(state=state),
        spec=TaskSpec(container_spec=ContainerSpec(image="busybox", args=["sleep", "1"])),
        **kw,
    )


async def seed(proposer, *objs):
    tx = Transaction()
    for o in objs:
        tx.create(o)
    await proposer.propose(tx)


def node(node_id=None):
    return Node(id=node_id or new_id(), spec=NodeSpec(role=NodeRole.WORKER),
                role=NodeRole.WORKER, status=NodeStatus(state=NodeState.READY))


def service(sid="svc", name="web"):
    return Service(id=sid, spec=ServiceSpec(
        name=name,
        endpoint_spec=EndpointSpec(ports=[
            PortConfig(target_port=80, published_port=8080, publish_mode="host"),
            PortConfig(target_port=81, published_port=8081, publish_mode="ingress"),
        ]),
    ))


# -- the set ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "desired", "expected"),
    [
        (S.PENDING, S.RUNNING, False),  # a global task with its node preset: not yet
        (S.ASSIGNED, S.RUNNING, True),
        (S.RUNNING, S.RUNNING, True),
        (S.FAILED, S.RUNNING, True),  # desired running: the restart supervisor has not acted
        (S.RUNNING, S.SHUTDOWN, True),  # must be stopped (node came back)
        (S.ASSIGNED, S.REMOVE, True),
        (S.SHUTDOWN, S.SHUTDOWN, False),
        (S.FAILED, S.SHUTDOWN, False),
        (S.COMPLETE, S.REMOVE, False),
        (S.ORPHANED, S.SHUTDOWN, False),
    ],
)
def test_is_assigned_follows_the_contract(state, desired, expected):
    assert is_assigned(make_task("n1", state, desired)) is expected


async def test_assignment_set_is_the_nodes_tasks_with_spec_name_and_host_ports():
    from swarmkit_py.manager.orchestrator.taskinit import task_endpoint

    p = LocalProposer()
    mine = make_task("n1", id="b" * 25)
    # The ports come from the endpoint the task was born with, not the live service.
    mine.endpoint = task_endpoint(service())
    other = make_task("n1", S.RUNNING, S.SHUTDOWN, id="a" * 25)
    done = make_task("n1", S.SHUTDOWN, S.SHUTDOWN)
    elsewhere = make_task("n2")
    orphan = make_task("n1", service_id="gone", name="old.3")
    await seed(p, service(), mine, other, done, elsewhere, orphan)
    tasks = assignment_set(p.store.view(), "n1")
    assert [t["id"] for t in tasks] == sorted([mine.id, other.id, orphan.id])
    wire = next(t for t in tasks if t["id"] == mine.id)
    assert wire["service_name"] == "web"
    assert (wire["slot"], wire["node_id"], wire["desired_state"], wire["state"]) == (
        1, "n1", "running", "assigned")
    assert wire["spec"]["ContainerSpec"]["Image"] == "busybox"
    assert [p["TargetPort"] for p in wire["ports"]] == [80]
    assert next(t for t in tasks if t["id"] == orphan.id)["service_name"] == "old"
    # The worker reads it back and turns it into a container.
    _, assignments = parse_assignments({"seq": 1, "tasks": tasks})
    read = next(a.task for a in assignments if a.task_id == mine.id)
    config = create_config(read)
    assert (config["Image"], config["Cmd"], container_name(read)) == \
        ("busybox", ["sleep", "1"], f"web.1.{mine.id}")
    assert config["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}


# -- over RPC -----------------------------------------------------------------------------


class Harness:
    """One dispatcher on loopback plus raw worker connections (params identity, no TLS)."""

    def __init__(self, proposer):
        self.proposer = proposer
        self.server = RpcServer(LOOPBACK, 0)
        self.dispatcher = Dispatcher(proposer, heartbeat_period=1.0, identify=params_identity,
                                     directory=StaticDirectory())
        self.dispatcher.register(self.server)
        self.clients: list[RpcClient] = []

    async def up(self):
        await self.server.start()
        self.dispatcher.start()
        return self

    async def down(self):
        for c in self.clients:
            await c.close()
        await self.dispatcher.stop()
        await self.server.stop()

    async def worker(self, node_id, features=None):
        """(client, session_id, received pushes)."""
        pushes: list = []
        reg = HandlerRegistry()
        reg.add_notification_handler(ASSIGNMENTS, lambda peer, params: pushes.append(params))
        client = RpcClient(LOOPBACK, self.server.bound_port, handlers=reg, timeout=5)
        self.clients.append(client)
        params = {"node_id": node_id}
        if features is not None:
            params["features"] = features
        answer = await client.call("dispatcher.session", params)
        return client, answer["session_id"], pushes


@pytest.fixture
async def harness():
    h = await Harness(CountingProposer()).up()
    yield h
    await h.down()


async def test_full_set_pushed_on_session_open_and_on_change(harness):
    n1 = node()
    t1 = make_task(n1.id)
    await seed(harness.proposer, n1, service(), t1)
    _, _, pushes = await harness.worker(n1.id)
    await wait_until(lambda: len(pushes) == 1, what="set on session open")
    assert [t["id"] for t in pushes[0]["tasks"]] == [t1.id]

    # Several transactions in a burst: one debounced push with the full set.
    more = [make_task(n1.id, slot=i) for i in range(2, 6)]
    for t in more:
        await seed(harness.proposer, t)
    await wait_until(lambda: len(pushes) >= 2, what="set after change")
    await asyncio.sleep(0.1)
    assert len(pushes) == 2
    assert {t["id"] for t in pushes[1]["tasks"]} == {t1.id, *(t.id for t in more)}
    assert pushes[1]["seq"] > pushes[0]["seq"]

    # Observed-state change only: no push (the worker reported it itself).
    upd = harness.proposer.store.view().get_task(t1.id).clone()
    upd.status.state = S.RUNNING
    await harness.proposer.propose(Transaction().update(upd))
    await asyncio.sleep(0.1)
    assert len(pushes) == 2

    # Desired state change: pushed; the task stays (not terminal yet) with desired shutdown.
    upd = harness.proposer.store.view().get_task(t1.id).clone()
    upd.desired_state = S.SHUTDOWN
    await harness.proposer.propose(Transaction().update(upd))
    await wait_until(lambda: len(pushes) == 3, what="set after desired change")
    w = next(t for t in pushes[2]["tasks"] if t["id"] == t1.id)
    assert (w["desired_state"], w["state"]) == ("shutdown", "running")


async def test_other_nodes_changes_do_not_push(harness):
    n1, n2 = node(), node()
    await seed(harness.proposer, n1, n2)
    _, _, pushes = await harness.worker(n1.id)
    await wait_until(lambda: len(pushes) == 1, what="initial (empty) set")
    assert pushes[0]["tasks"] == []
    await seed(harness.proposer, make_task(n2.id))
    await asyncio.sleep(0.1)
    assert len(pushes) == 1


async def test_a_change_to_many_nodes_is_pushed_in_chunks(harness, monkeypatch):
    """One transaction touching more nodes than a flush builds per loop turn: every node still
    gets its set, chunk after chunk (the loop handed back in between)."""
    from swarmkit_py.manager.dispatcher import assignments

    monkeypatch.setattr(assignments, "FLUSH_NODES", 2)
    nodes = [node() for _ in range(5)]
    await seed(harness.proposer, *nodes, service())
    pushes = [(await harness.worker(n.id))[2] for n in nodes]
    await wait_until(lambda: all(len(p) == 1 for p in pushes), what="initial sets")
    tasks = [make_task(n.id, slot=i + 1) for i, n in enumerate(nodes)]
    await seed(harness.proposer, *tasks)  # one transaction, five nodes
    await wait_until(lambda: all(len(p) == 2 for p in pushes), what="every node's new set")
    assert [[t["id"] for t in p[1]["tasks"]] for p in pushes] == [[t.id] for t in tasks]


async def test_an_incremental_session_gets_its_set_then_only_what_changed(harness):
    """A worker that names FEATURE_INCREMENTAL: the full set when its session opens, then each
    change as the tasks changed and the ids that left, on top of the previous push's seq."""
    n1, n2 = node(), node()
    t1, t2 = make_task(n1.id, slot=1), make_task(n1.id, slot=2)
    await seed(harness.proposer, n1, n2, service(), t1, t2)
    _, _, pushes = await harness.worker(n1.id, [FEATURE_INCREMENTAL, "something-newer"])
    await wait_until(lambda: len(pushes) == 1, what="set on session open")
    assert sorted(t["id"] for t in pushes[0]["tasks"]) == sorted([t1.id, t2.id])
    assert "base" not in pushes[0]

    t3 = make_task(n1.id, slot=3)
    await seed(harness.proposer, t3, make_task(n2.id, slot=4))  # n2's task: nothing for n1
    await wait_until(lambda: len(pushes) == 2, what="the added task")
    p = pushes[1]
    assert (p["base"], [t["id"] for t in p["changed"]], p["removed"]) == (pushes[0]["seq"], [t3.id], [])
    assert "tasks" not in p and p["seq"] > p["base"]

    # Observed state only: nothing. Desired state: that task alone.
    upd = harness.proposer.store.view().get_task(t1.id).clone()
    upd.status.state = S.RUNNING
    await harness.proposer.propose(Transaction().update(upd))
    upd = harness.proposer.store.view().get_task(t2.id).clone()
    upd.desired_state = S.SHUTDOWN
    await harness.proposer.propose(Transaction().update(upd))
    await wait_until(lambda: len(pushes) == 3, what="the desired-state change")
    await asyncio.sleep(0.1)
    assert len(pushes) == 3
    p = pushes[2]
    assert p["base"] == pushes[1]["seq"] and p["removed"] == []
    assert [(t["id"], t["desired_state"]) for t in p["changed"]] == [(t2.id, "shutdown")]

    # A task moved to another node and one deleted: both leave n1's set.
    moved = harness.proposer.store.view().get_task(t3.id).clone()
    moved.node_id = n2.id
    await harness.proposer.propose(Transaction().update(moved).delete("task", t1.id))
    await wait_until(lambda: len(pushes) == 4, what="the removals")
    p = pushes[3]
    assert (p["base"], p["changed"], sorted(p["removed"])) == (pushes[2]["seq"], [], sorted([t1.id, t3.id]))
    assert harness.dispatcher.assignments.incremental_pushes == 3


async def test_a_resync_request_brings_the_full_set_and_changes_go_on_from_it(harness):
    n1 = node()
    t1 = make_task(n1.id)
    await seed(harness.proposer, n1, service(), t1)
    client, sid, pushes = await harness.worker(n1.id, [FEATURE_INCREMENTAL])
    await wait_until(lambda: len(pushes) == 1, what="set on session open")
    assert await client.call(ASSIGNMENTS_RESYNC, {"session_id": sid}) == {}
    await wait_until(lambda: len(pushes) == 2, what="the full set again")
    assert [t["id"] for t in pushes[1]["tasks"]] == [t1.id] and "base" not in pushes[1]
    t2 = make_task(n1.id, slot=2)
    await seed(harness.proposer, t2)
    await wait_until(lambda: len(pushes) == 3, what="a change after the resync")
    assert pushes[2]["base"] == pushes[1]["seq"] and [t["id"] for t in pushes[2]["changed"]] == [t2.id]
    assert harness.dispatcher.counters["assignment_resyncs"] == 1
    # Only on one's own open session.
    with pytest.raises(RpcError, match="unknown or expired session"):
        await client.call(ASSIGNMENTS_RESYNC, {"session_id": "nope"})


async def test_features_must_be_a_list_of_names(harness):
    n1 = node()
    await seed(harness.proposer, n1)
    client = RpcClient(LOOPBACK, harness.server.bound_port, timeout=5)
    harness.clients.append(client)
    with pytest.raises(RpcError, match="features must be a list of strings"):
        await client.call("dispatcher.session", {"node_id": n1.id, "features": "assignments-incremental"})


async def test_a_failed_change_makes_the_next_push_a_full_set(harness, monkeypatch):
    """The leader cannot know whether a push it could not send arrived: it forgets what the
    node holds, so the next push is the full set."""
    n1 = node()
    await seed(harness.proposer, n1, service(), make_task(n1.id))
    _, _, pushes = await harness.worker(n1.id, [FEATURE_INCREMENTAL])
    await wait_until(lambda: len(pushes) == 1, what="set on session open")
    real_push = harness.dispatcher.push
    failed = []

    async def failing_once(node_id, method, params=None, *, frame=None):
        if not failed:
            failed.append(params)
            return False
        return await real_push(node_id, method, params, frame=frame)

    monkeypatch.setattr(harness.dispatcher, "push", failing_once)
    t2 = make_task(n1.id, slot=2)
    await seed(harness.proposer, t2)
    await wait_until(lambda: len(pushes) == 2, what="the full set after the failure")
    assert failed and failed[0]["base"] == pushes[0]["seq"]
    assert len(pushes[1]["tasks"]) == 2 and "base" not in pushes[1]


async def status_call(client, session_id, *updates):
    return await client.call(TASK_STATUS, {"session_id": session_id, "updates": list(updates)})


def upd(task, state, **kw):
    return {"task_id": task.id, "state": state, "message": state, **kw}


async def test_one_transaction_per_call_and_no_op_skipped(harness):
    n1 = node()
    tasks = [make_task(n1.id, slot=i) for i in range(5)]
    await seed(harness.proposer, n1, *tasks)
    client, sid, _ = await harness.worker(n1.id)
    before = len(harness.proposer.sizes)
    answer = await status_call(client, sid, *(
        upd(t, "running", container_status={"container_id": "c" + t.id, "pid": 7})
        for t in tasks))
    assert answer == {"written": 5, "skipped": []}
    assert harness.proposer.sizes[before:] == [5]
    view = harness.proposer.store.view()
    assert all(view.get_task(t.id).status.state == S.RUNNING for t in tasks)
    assert view.get_task(tasks[0].id).status.container_status.container_id == "c" + tasks[0].id

    # The same report again changes nothing: no proposal at all.
    before = len(harness.proposer.sizes)
    answer = await status_call(client, sid, upd(tasks[0], "running",
                                                container_status={"container_id": "c" + tasks[0].id,
                                                                  "pid": 7}))
    assert answer["skipped"] == [{"task_id": tasks[0].id, "reason": "unchanged"}]
    assert harness.proposer.sizes[before:] == []


async def test_backwards_moves_are_ignored(harness):
    n1 = node()
    t = make_task(n1.id, state=S.FAILED)
    await seed(harness.proposer, n1, t)
    client, sid, _ = await harness.worker(n1.id)
    answer = await status_call(client, sid, upd(t, "running"), upd(t, "shutdown"))
    assert answer["written"] == 0
    assert harness.proposer.store.view().get_task(t.id).status.state == S.FAILED


async def test_same_task_twice_in_a_call_last_wins(harness):
    n1 = node()
    t = make_task(n1.id)
    await seed(harness.proposer, n1, t)
    client, sid, _ = await harness.worker(n1.id)
    await status_call(client, sid, upd(t, "accepted"), upd(t, "preparing"), upd(t, "running"))
    assert harness.proposer.store.view().get_task(t.id).status.state == S.RUNNING


async def test_wrong_node_refused_and_nothing_written(harness):
    n1, n2 = node(), node()
    mine, theirs = make_task(n1.id), make_task(n2.id)
    await seed(harness.proposer, n1, n2, mine, theirs)
    client, sid, _ = await harness.worker(n1.id)
    with pytest.raises(RpcError) as e:
        await status_call(client, sid, upd(mine, "running"), upd(theirs, "failed"))
    assert e.value.code == "permission_denied"
    view = harness.proposer.store.view()
    assert view.get_task(mine.id).status.state == S.ASSIGNED
    assert view.get_task(theirs.id).status.state == S.ASSIGNED


async def test_bad_requests_refused(harness):
    n1 = node()
    t = make_task(n1.id)
    await seed(harness.proposer, n1, t)
    client, sid, _ = await harness.worker(n1.id)
    for bad in ("orphaned", "pending", "bogus"):
        with pytest.raises(RpcError) as e:
            await status_call(client, sid, upd(t, bad))
        assert e.value.code == "invalid_argument"
    with pytest.raises(RpcError) as e:
        await status_call(client, "no-such-session", upd(t, "running"))
    assert e.value.code == "session_invalid"
    # A session id is bound to its connection.
    other = RpcClient(LOOPBACK, harness.server.bound_port)
    harness.clients.append(other)
    with pytest.raises(RpcError) as e:
        await status_call(other, sid, upd(t, "running"))
    assert e.value.code == "session_invalid"
    # Unknown task: skipped, not an error (the reaper may have deleted it).
    answer = await status_call(client, sid, {"task_id": "nope", "state": "running"})
    assert answer == {"written": 0, "skipped": [{"task_id": "nope", "reason": "not_found"}]}


async def test_calls_arriving_while_busy_share_one_transaction():
    proposer = CountingProposer(delay=0.05)
    h = await Harness(proposer).up()
    try:
        nodes = [node() for _ in range(4)]
        tasks = [make_task(n.id) for n in nodes]
        await seed(proposer, *nodes, *tasks)
        workers = [await h.worker(n.id) for n in nodes]
        before = len(proposer.sizes)
        # First call starts a proposal; the other three arrive while it is in flight.
        first = asyncio.create_task(status_call(workers[0][0], workers[0][1],
                                                upd(tasks[0], "running")))
        await wait_until(lambda: len(proposer.sizes) > before, what="first proposal")
        rest = [status_call(c, sid, upd(t, "running"))
                for (c, sid, _), t in zip(workers[1:], tasks[1:], strict=True)]
        await asyncio.gather(first, *rest)
        assert proposer.sizes[before:] == [1, 3]
    finally:
        await h.down()


async def test_not_leader_refuses_task_status():
    p = LocalProposer()
    h = Harness(p)
    await h.server.start()
    try:
        client = RpcClient(LOOPBACK, h.server.bound_port)
        h.clients.append(client)
        with pytest.raises(RpcError) as e:
            await client.call(TASK_STATUS, {"session_id": "x", "updates": []})
        assert e.value.code == "not_leader"
    finally:
        await h.down()


def test_only_observed_state_changes_skip_the_recompute():
    t = make_task("n1", state=S.ACCEPTED)
    running = t.clone()
    running.status = TaskStatus(state=S.RUNNING, message="started")
    assert observed_only(t, running)  # the worker's own report
    for change in (
        lambda x: setattr(x, "desired_state", S.SHUTDOWN),
        lambda x: setattr(x, "node_id", "n2"),
        lambda x: setattr(x.spec.container_spec, "image", "other"),
        lambda x: setattr(x, "status", TaskStatus(state=S.FAILED)) or setattr(x, "desired_state", S.SHUTDOWN),
    ):
        other = t.clone()
        change(other)
        assert not observed_only(t, other)
    assert not observed_only(None, t) and not observed_only(t, None)
    pending = make_task(None, state=S.PENDING)
    assert not observed_only(pending, t)  # scheduled: joins a set
