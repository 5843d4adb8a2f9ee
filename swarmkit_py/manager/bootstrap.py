"""The first transaction of a new swarm: the cluster object (settings, join tokens, CA) and
the founding manager's node object.

It is proposed by the founding manager once it leads its one-member Raft group, so even the
very first state is in the replicated log like everything after it.
"""

from __future__ import annotations

import hashlib

from ..ca import RootCA as CA
from ..ca import generate_join_token
from ..store import (
    Cluster,
    ClusterSpec,
    JoinTokens,
    ManagerStatus,
    Node,
    NodeDescription,
    NodeSpec,
    NodeStatus,
    RootCA,
    Transaction,
)
from ..store.objects.cluster import DispatcherConfig, OrchestrationConfig

DEFAULT_HEARTBEAT_NS = 1_000_000_000  # 1 s (Swarm: 5 s)


def initial_transaction(
    *, cluster_id: str, node_id: str, raft_id: int, hostname: str, advertise_addr: str, ca: CA
) -> Transaction:
    cluster = Cluster(
        id=cluster_id,
        spec=ClusterSpec(
            name="default",
            orchestration=OrchestrationConfig(task_history_retention_limit=5),
            dispatcher=DispatcherConfig(heartbeat_period=DEFAULT_HEARTBEAT_NS),
        ),
        join_tokens=JoinTokens(worker=generate_join_token(ca.cert_pem), manager=generate_join_token(ca.cert_pem)),
        root_ca=RootCA(
            ca_cert=ca.cert_pem.decode(),
            ca_key=ca.key_pem.decode(),
            ca_cert_hash=hashlib.sha256(ca.cert_der).hexdigest(),
        ),
    )
    host = advertise_addr.rpartition(":")[0]
    node = Node(
        id=node_id,
        spec=NodeSpec(role="manager", availability="active"),
        description=NodeDescription(hostname=hostname),
        status=NodeStatus(state="unknown", addr=host),
        manager_status=ManagerStatus(addr=advertise_addr),
        role="manager",
        raft_id=raft_id,
    )
    return Transaction().create(cluster).create(node)
