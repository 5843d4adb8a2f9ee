"""`free_ports`: test ports come from below the kernel's ephemeral range, where no outgoing
connection can be handed one between the draw and the bind that uses it."""

from __future__ import annotations

import socket

from swarmkit_py.raft.kv.cluster import POOL_LOW, _ephemeral_low, free_ports


def test_ports_are_distinct_free_and_below_the_ephemeral_range():
    ports = free_ports(50)
    assert len(set(ports)) == 50
    assert all(POOL_LOW <= p < _ephemeral_low() for p in ports)
    for p in ports[:5]:  # free now: each binds
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
