"""A small swarm in a bare store, for the control API and HTTP API tests (and the CLI
integration test): N managers + M workers, a cluster object with a real root CA and join
tokens, and a fake ClusterContext whose Raft membership the test sets directly."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field

import msgpack

from swarmkit_py.ca import RootCA, generate_join_token
from swarmkit_py.manager.context import RaftMember
from swarmkit_py.manager.controlapi import ControlAPI
from swarmkit_py.manager.proposer import LocalProposer
from swarmkit_py.store import Cluster, MemoryStore, Node, Transaction, new_id


class FakeContext:
    """ClusterContext with fixed answers: the Raft membership is whatever the test says."""

    def __init__(self, proposer: LocalProposer, node_id: str, members: list[RaftMember]):
        self.proposer = proposer
        self._node_id = node_id
        self.members = members

    @property
    def node_id(self) -> str:
        return self._node_id

    def is_leader(self) -> bool:
        return self.leader_node_id() == self._node_id

    def leader_node_id(self) -> str | None:
        for m in self.members:
            if m.leader and m.reachable:
                return m.node_id
        return None

    def raft_members(self) -> list[RaftMember]:
        return list(self.members)

    async def read_barrier(self, timeout: float | None = None) -> None:
        await asyncio.sleep(0)

    def set_member(self, node_id: str, **changes) -> None:
        self.members = [
            dataclasses.replace(m, **changes) if m.node_id == node_id else m for m in self.members
        ]

    def drop_member(self, node_id: str) -> None:
        self.members = [m for m in self.members if m.node_id != node_id]


@dataclass
class Swarm:
    store: MemoryStore
    proposer: LocalProposer
    ctx: FakeContext
    control: ControlAPI
    root_ca: RootCA
    cluster_id: str
    managers: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)

    def node(self, node_id: str) -> Node:
        return self.store.view().get_node(node_id)

    def cluster(self) -> Cluster:
        return self.store.view().cluster()

    def snapshot(self) -> dict:
        """Every stored object (the applied index left out: a refused transaction still
        consumes a log index, as in Raft, but must change nothing else)."""
        return msgpack.unpackb(self.store.snapshot(), raw=False)["objects"]


_ROOT_CA: RootCA | None = None


def shared_root_ca() -> RootCA:
    """One CA per test process: generating keys is the slowest part of a fixture."""
    global _ROOT_CA
    if _ROOT_CA is None:
        _ROOT_CA = RootCA.create()
    return _ROOT_CA


def _node(node_id: str, hostname: str, role: str, addr: str, raft_id: int | None) -> Node:
    return Node.model_validate(
        {
            "ID": node_id,
            "Spec": {"Labels": {}, "Role": role, "Availability": "active"},
            "Description": {
                "Hostname": hostname,
                "Platform": {"Architecture": "x86_64", "OS": "linux"},
                "Engine": {"EngineVersion": "28.2.2", "Labels": {"zone": hostname[:1]}},
            },
            "Status": {"State": "ready", "Addr": addr},
            "Role": role,
            "RaftID": raft_id,
        }
    )


def make_swarm(managers: int = 3, workers: int = 2, self_index: int = 0) -> Swarm:
    """Managers m1..mN (m1 leads; all reachable voters), workers w1..wM, all ready."""
    proposer = LocalProposer(MemoryStore())
    root_ca = shared_root_ca()
    ca_pem = root_ca.cert_pem.decode()
    cluster = Cluster.model_validate(
        {
            "ID": new_id(),
            "Spec": {
                "Name": "default",
                "Labels": {},
                "Orchestration": {"TaskHistoryRetentionLimit": 5},
                "Raft": {
                    "SnapshotInterval": 10000,
                    "KeepOldSnapshots": 0,
                    "LogEntriesForSlowFollowers": 500,
                    "ElectionTick": 10,
                    "HeartbeatTick": 1,
                },
                "Dispatcher": {"HeartbeatPeriod": 5_000_000_000},
                "CAConfig": {"NodeCertExpiry": 7_776_000_000_000_000},
                "EncryptionConfig": {"AutoLockManagers": False},
            },
            "JoinTokens": {
                "Worker": generate_join_token(ca_pem),
                "Manager": generate_join_token(ca_pem),
            },
            "RootCA": {"CACert": ca_pem},
            "SubnetSize": 24,
            "DataPathPort": 4789,
        }
    )
    tx = Transaction().create(cluster)
    manager_ids, worker_ids, members = [], [], []
    for i in range(managers):
        node_id = new_id()
        addr = f"127.0.0.{i + 1}"
        tx.create(_node(node_id, f"m{i + 1}", "manager", addr, i + 1))
        manager_ids.append(node_id)
        members.append(
            RaftMember(
                raft_id=i + 1,
                node_id=node_id,
                addr=f"{addr}:2377",
                voter=True,
                reachable=True,
                leader=i == 0,
            )
        )
    for i in range(workers):
        node_id = new_id()
        tx.create(_node(node_id, f"w{i + 1}", "worker", f"127.0.1.{i + 1}", None))
        worker_ids.append(node_id)
    proposer.store.apply(1, tx.encode())
    self_id = manager_ids[self_index] if manager_ids else (worker_ids[0] if worker_ids else "")
    ctx = FakeContext(proposer, self_id, members)
    return Swarm(
        store=proposer.store,
        proposer=proposer,
        ctx=ctx,
        control=ControlAPI(ctx),
        root_ca=root_ca,
        cluster_id=cluster.id,
        managers=manager_ids,
        workers=worker_ids,
    )


def test_fixture_builds_the_described_swarm():
    s = make_swarm(3, 2)
    view = s.store.view()
    assert view.count("node") == 5
    assert [n.description.hostname for n in view.list("node")] == ["m1", "m2", "m3", "w1", "w2"]
    assert s.ctx.leader_node_id() == s.managers[0]
    assert s.cluster().root_ca.ca_cert.startswith("-----BEGIN CERTIFICATE-----")


def test_fake_context_membership_edits():
    s = make_swarm(3, 0)
    s.ctx.set_member(s.managers[0], reachable=False)
    assert s.ctx.leader_node_id() is None
    s.ctx.drop_member(s.managers[2])
    assert [m.node_id for m in s.ctx.raft_members()] == s.managers[:2]
