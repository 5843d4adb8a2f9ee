"""Where the managers are: what a session answer lists and where "not leader" points.

Workers keep the list to fail over (Swarm's agent keeps a weighted list of remotes from the
session stream); the leader's address turns a misdirected worker around in one round trip.
The source of truth is the Raft membership, which only the manager knows, so the dispatcher
takes a small directory object; tests pass a :class:`StaticDirectory`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ...store import MemoryStore, NodeRole
from ..context import ClusterContext


class ManagerDirectory(Protocol):
    def managers(self) -> list[dict[str, str]]:
        """``[{"node_id": ..., "addr": "host:port"}]`` of the managers workers may dial."""

    def leader_addr(self) -> str | None:
        """The leader's dialable address, None when no leader is known."""

    def last_contact(self, node_id: str) -> float | None:
        """Seconds since this manager's Raft member last heard from ``node_id``'s Raft member,
        None when ``node_id`` is not a manager (no evidence either way)."""

    def host_silent(self, node_id: str) -> bool:
        """Kernel evidence that manager ``node_id``'s host is down or cut off: its Raft
        connection has data in flight that it stopped acknowledging (RaftNode.host_silent).
        False for workers and when there is no telling."""

    def on_leader_change(self, callback: Callable[[int], None]) -> None:
        """``callback(term)`` whenever this manager's Raft member sees the leader change."""


class ClusterDirectory:
    """The live Raft membership of a manager (addresses of the 2377 listeners)."""

    def __init__(self, cluster: ClusterContext) -> None:
        self._cluster = cluster

    def managers(self) -> list[dict[str, str]]:
        # learners too: a manager still catching up already redirects workers to the leader,
        # and a worker that learns of it early is not stranded if the leader dies meanwhile
        return [{"node_id": m.node_id, "addr": m.addr} for m in self._cluster.raft_members() if m.addr]

    def leader_addr(self) -> str | None:
        for m in self._cluster.raft_members():
            if m.leader and m.addr:
                return m.addr
        return None

    def last_contact(self, node_id: str) -> float | None:
        return self._cluster.last_contact(node_id)

    def host_silent(self, node_id: str) -> bool:
        silent = getattr(self._cluster, "host_silent", None)
        return bool(silent is not None and silent(node_id))

    def on_leader_change(self, callback: Callable[[int], None]) -> None:
        self._cluster.add_leader_listener(lambda _leader, term: callback(term))


class StoreDirectory:
    """Manager nodes as the store records them (``manager_status.addr``), for callers without
    a Raft context. Leadership is not stored durably, so the hint may be stale or missing."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def managers(self) -> list[dict[str, str]]:
        out = []
        for node in self._store.view().list("node"):
            ms = node.manager_status
            if node.role == NodeRole.MANAGER and ms is not None and ms.addr:
                out.append({"node_id": node.id, "addr": ms.addr})
        return out

    def leader_addr(self) -> str | None:
        for node in self._store.view().list("node"):
            ms = node.manager_status
            if ms is not None and ms.leader and ms.addr:
                return ms.addr
        return None

    def last_contact(self, node_id: str) -> float | None:
        return None  # no Raft here: node liveness rests on heartbeats alone

    def host_silent(self, node_id: str) -> bool:
        return False

    def on_leader_change(self, callback: Callable[[int], None]) -> None:
        pass  # leadership is not stored: nothing to follow


@dataclass
class StaticDirectory:
    """Fixed answers, changeable by assignment (tests, single-manager tools)."""

    manager_list: list[dict[str, str]] = field(default_factory=list)
    leader: str | None = None
    contact: dict[str, float] = field(default_factory=dict)
    """node_id -> time.monotonic() of the last Raft contact with it (managers only)."""
    listeners: list[Callable[[int], None]] = field(default_factory=list)
    silent: set[str] = field(default_factory=set)
    """Managers whose host shows no sign of life at the TCP level (host_silent)."""

    def managers(self) -> list[dict[str, str]]:
        return list(self.manager_list)

    def leader_addr(self) -> str | None:
        return self.leader

    def last_contact(self, node_id: str) -> float | None:
        t = self.contact.get(node_id)
        return None if t is None else time.monotonic() - t

    def host_silent(self, node_id: str) -> bool:
        return node_id in self.silent

    def on_leader_change(self, callback: Callable[[int], None]) -> None:
        self.listeners.append(callback)

    def set_leader(self, leader: str | None, term: int) -> None:
        """Change the answer and tell the subscribers, as a Raft leader change would."""
        self.leader = leader
        for cb in self.listeners:
            cb(term)
