"""Dispatcher pieces without sockets: deadlines, no-op detection, the wire contract."""

from __future__ import annotations

import pytest

from swarmkit_py.manager.dispatcher import HeartbeatTracker, StatusChange, apply_change
from swarmkit_py.proto import leader_hint, not_leader_message
from swarmkit_py.store import Node, NodeDescription, NodeState, NodeStatus, new_id
from swarmkit_py.worker import session as worker_session
from swarmkit_py.worker.describe import description_from_host, description_from_info


def test_tracker_expires_each_node_once_at_its_latest_deadline():
    t = HeartbeatTracker()
    t.set("a", 1.0)
    t.set("b", 2.0)
    t.set("a", 3.0)  # a heartbeat moved a's deadline later
    assert t.next_deadline() == 2.0
    assert t.pop_expired(2.5) == ["b"]
    assert t.pop_expired(2.5) == []
    assert t.next_deadline() == 3.0
    assert t.pop_expired(3.0) == ["a"]
    assert len(t) == 0 and t.next_deadline() is None


def test_tracker_can_move_a_deadline_earlier_and_discard():
    t = HeartbeatTracker()
    t.set("a", 5.0)
    t.set("a", 1.0)
    assert t.pop_expired(1.0) == ["a"]
    t.set("b", 1.0)
    t.discard("b")
    assert t.pop_expired(10.0) == []


def test_tracker_heap_stays_bounded_under_many_heartbeats():
    t = HeartbeatTracker()
    for i in range(10_000):
        t.set("n", float(i))
    assert len(t._heap) < 200
    assert t.pop_expired(9_999.0) == ["n"]


def _node(state=NodeState.READY, addr="10.0.0.1", hostname="h1") -> Node:
    return Node(
        id=new_id(),
        status=NodeStatus(state=state, addr=addr),
        description=NodeDescription(hostname=hostname),
    )


def test_apply_change_skips_what_changes_nothing():
    node = _node()
    assert apply_change(node, StatusChange(NodeState.READY, None, "10.0.0.1")) is None
    assert apply_change(node, StatusChange(NodeState.READY)) is None  # keep addr/description
    same_desc = NodeDescription.model_validate({"hostname": "h1"})
    assert apply_change(node, StatusChange(NodeState.READY, description=same_desc)) is None


def test_apply_change_writes_real_changes_without_touching_the_stored_object():
    node = _node()
    down = apply_change(node, StatusChange(NodeState.DOWN, "heartbeat failure"))
    assert down is not None and down.status.state == NodeState.DOWN
    assert down.status.addr == "10.0.0.1" and down.description.hostname == "h1"
    assert node.status.state == NodeState.READY
    moved = apply_change(node, StatusChange(NodeState.READY, None, "10.0.0.2"))
    assert moved is not None and moved.status.addr == "10.0.0.2"
    renamed = apply_change(
        node, StatusChange(NodeState.READY, description=NodeDescription(hostname="h2"))
    )
    assert renamed is not None and renamed.description.hostname == "h2"


def test_not_leader_message_round_trips_the_hint():
    assert leader_hint(not_leader_message("10.1.2.3:2377")) == "10.1.2.3:2377"
    assert leader_hint(not_leader_message("[::1]:2377")) == "[::1]:2377"
    assert leader_hint(not_leader_message(None)) is None
    assert leader_hint("something else") is None


def test_split_addr():
    assert worker_session.split_addr("127.0.0.1:2377") == ("127.0.0.1", 2377)
    assert worker_session.split_addr("[::1]:2377") == ("::1", 2377)
    with pytest.raises(ValueError):
        worker_session.split_addr("nohost")


def test_description_from_docker_info_validates_as_a_node_description():
    info = {
        "NCPU": 4,
        "MemTotal": 8 * 2**30,
        "ServerVersion": "26.1.5",
        "Labels": ["zone=a", "ssd"],
        "OSType": "linux",
        "Architecture": "x86_64",
        "Name": "engine-host",
    }
    raw = description_from_info(info, hostname="node-1")
    desc = NodeDescription.model_validate(raw)
    assert desc.hostname == "node-1"
    assert desc.resources.nano_cpus == 4_000_000_000
    assert desc.resources.memory_bytes == 8 * 2**30
    assert desc.engine.engine_version == "26.1.5"
    assert desc.engine.labels == {"zone": "a", "ssd": ""}
    assert desc.platform.os == "linux" and desc.platform.architecture == "x86_64"
    assert desc.to_api()["Resources"]["NanoCPUs"] == 4_000_000_000


def test_description_from_host_reads_proc(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       2048 kB\nMemFree: 1 kB\n")
    raw = description_from_host("h", meminfo=str(meminfo))
    desc = NodeDescription.model_validate(raw)
    assert desc.resources.memory_bytes == 2048 * 1024
    assert desc.resources.nano_cpus >= 1_000_000_000
    assert desc.engine is None and desc.hostname == "h"
    assert (
        description_from_host("h", meminfo=str(tmp_path / "absent"))["resources"]["memory_bytes"]
        is None
    )


def test_describe_node_falls_back_to_the_host_without_an_engine(tmp_path):
    from swarmkit_py.worker.describe import describe_node

    raw = describe_node(f"unix://{tmp_path}/no-docker.sock", hostname="lonely")
    desc = NodeDescription.model_validate(raw)
    assert desc.hostname == "lonely" and desc.engine is None
    assert desc.resources.nano_cpus >= 1_000_000_000


async def test_a_large_round_of_task_reports_is_written_in_bounded_entries(monkeypatch):
    """Thousands of status updates from one round of reports go into entries of at most
    MAX_TX_OPS tasks (no entry so big that applying it holds every manager's loop); a
    conflict refuses only its own entry, which is rebuilt from a fresh read; the stored
    tasks are never changed in place."""
    from swarmkit_py.manager.dispatcher import taskstatus
    from swarmkit_py.manager.proposer import LocalProposer
    from swarmkit_py.store import SequenceError, Task, TaskState, TaskStatus, Transaction

    monkeypatch.setattr(taskstatus, "MAX_TX_OPS", 10)
    p = LocalProposer()
    tasks = [Task(id=new_id(), service_id="svc", node_id="n1", slot=i + 1,
                  status=TaskStatus(state=TaskState.ASSIGNED)) for i in range(25)]
    tx = Transaction()
    for t in tasks:
        tx.create(t)
    await p.propose(tx)
    stored = {t.id: p.store.view().get_task(t.id) for t in tasks}
    sizes: list[int] = []
    real = p.propose
    conflicted = []

    async def propose(tx, timeout=None):
        sizes.append(len(tx))
        if len(sizes) == 2 and not conflicted:  # the second entry loses a race once
            conflicted.append(len(tx))
            raise SequenceError(op_index=0)
        return await real(tx, timeout)

    p.propose = propose
    writer = taskstatus.TaskStatusWriter(p)
    updates = [taskstatus.StatusUpdate(t.id, TaskStatus(state=TaskState.RUNNING)) for t in tasks]
    answer = await writer.submit(updates)
    assert answer == {"written": 25, "skipped": []}
    assert sizes[:3] == [10, 10, 5] and sizes[3:] == [10]  # the refused entry, again
    assert writer.transactions == 3 and writer.tasks_written == 25
    view = p.store.view()
    assert all(view.get_task(t.id).status.state == TaskState.RUNNING for t in tasks)
    assert all(s.status.state == TaskState.ASSIGNED for s in stored.values())
