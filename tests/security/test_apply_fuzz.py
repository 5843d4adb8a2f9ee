"""Hole 7c: a client-supplied spec must never make the store's apply step raise (issue 9).

Every manager applies the same Raft entries; an entry whose apply raises stops every manager
on it, for ever (a restart replays it). So whatever the control API accepts from a client
(service, node and cluster specs, mutated from what the real docker CLI sends) goes here
through the exact bytes a leader proposes, and is applied by two stores, the leader's and a
follower restored from the leader's snapshot. Neither may raise; both must reach the same
state; and what the API accepted, the store must accept (no write may be acknowledged to a
client and then refused by apply). hypothesis drives the specs.
"""

from __future__ import annotations

import asyncio
import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmkit_py.manager.controlapi import ControlAPI
from swarmkit_py.store import MemoryStore, StoreError, TxApplied
from tests.unit.test_api_fuzz import json_values
from tests.unit.test_api_services_fuzz import PATHS, odd_values
from tests.unit.test_api_services_fuzz import mutate as mutate_paths
from tests.unit.test_controlapi_fixtures import make_swarm
from tests.unit.test_controlapi_services import CLI_CREATE

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NODE_PATHS = [("Role",), ("Availability",), ("Labels",), ("Name",), ("labels",), ("Extra",)]
CLUSTER_PATHS = [("Name",), ("Labels",), ("Orchestration",), ("Orchestration", "TaskHistoryRetentionLimit"),
                 ("Raft",), ("Raft", "SnapshotInterval"), ("Dispatcher", "HeartbeatPeriod"),
                 ("CAConfig",), ("CAConfig", "NodeCertExpiry"), ("CAConfig", "ExternalCAs"),
                 ("EncryptionConfig",), ("EncryptionConfig", "AutoLockManagers"), ("TaskDefaults",)]
weird = st.one_of(
    odd_values,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**80), 2**80),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)


class ReplicatingProposer:
    """The leader's store applies the proposed bytes; so does a follower's."""

    def __init__(self, leader: MemoryStore):
        self.store = leader
        self.follower = MemoryStore()
        self.follower.restore(leader.snapshot())
        self.index = leader.applied_index

    async def propose(self, tx, timeout=None):
        data = tx.encode()
        self.index += 1
        results = [store.apply(self.index, data) for store in (self.store, self.follower)]
        assert type(results[0]) is type(results[1]), results
        assert self.store.snapshot() == self.follower.snapshot(), "leader and follower diverged"
        if isinstance(results[0], StoreError):
            raise results[0]
        return results[0]


def mutate(draw, body: dict, paths) -> dict:
    return mutate_paths(draw, copy.deepcopy(body), paths, weird)


def run_api(call):
    """The API's verdict: a StoreError (the control API's refusals are StoreErrors) is a
    refusal, which is fine; anything else that escapes, and any exception from apply (raised
    inside the proposer), fails the test."""
    try:
        return asyncio.run(call)
    except StoreError:
        return None


def api():
    swarm = make_swarm()
    proposer = ReplicatingProposer(swarm.proposer.store)
    swarm.ctx.proposer = proposer
    return ControlAPI(swarm.ctx), proposer, swarm


@FUZZ
@given(data=st.data())
def test_service_specs_never_break_apply(data):
    control, proposer, _ = api()
    spec = mutate(data.draw, CLI_CREATE, PATHS)
    created = run_api(control.create_service(spec))
    if created is None:
        return
    assert proposer.follower.view().get("service", created.id) is not None
    update = mutate(data.draw, CLI_CREATE, PATHS)
    run_api(control.update_service(created.id, created.version.index, update))


@FUZZ
@given(data=st.data())
def test_node_and_cluster_specs_never_break_apply(data):
    control, proposer, swarm = api()
    node = proposer.store.view().nodes()[-1]
    base_node = node.spec.to_api() if hasattr(node.spec, "to_api") else node.spec.model_dump(mode="json", by_alias=True)
    run_api(control.update_node(node.id, node.version.index, mutate(data.draw, base_node, NODE_PATHS)))
    cluster = proposer.store.view().cluster()
    base = cluster.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    run_api(control.update_cluster(cluster.version.index, mutate(data.draw, base, CLUSTER_PATHS)))


def test_apply_refuses_an_entry_it_cannot_apply_instead_of_raising(monkeypatch):
    """Whatever slips past the API (a bug, an entry from an older version): apply returns an
    error result and leaves the store exactly as it was, on every manager alike, instead of
    raising. The stand-in for such a bug: a task index that cannot handle one value."""
    from swarmkit_py.store import tables

    def fragile(task):
        if task.service_id == "poison":
            raise KeyError("an index bug")
        return task.service_id or None

    monkeypatch.setitem(tables.SCHEMAS["task"].indexes, "service_id", fragile)
    control, proposer, _ = api()
    svc = run_api(control.create_service(copy.deepcopy(CLI_CREATE)))
    before = proposer.store.view().list("task")
    from swarmkit_py.store import Task, Transaction, new_id

    good = Task.model_validate({"ID": new_id(), "ServiceID": svc.id, "DesiredState": "running"})
    bad = Task.model_validate({"ID": new_id(), "ServiceID": "poison", "DesiredState": "running"})
    result = proposer.store.apply(proposer.index + 1, Transaction().create(good).create(bad).encode())
    assert not isinstance(result, TxApplied), result
    assert proposer.store.view().list("task") == before == [], "half of a refused transaction was applied"
