"""The leader's table of open worker sessions.

A session is bound to the connection that opened it: that connection is both the channel the
leader pushes assignments down and the proof of identity for later heartbeats (the certificate
was checked when the session opened, so a heartbeat arriving on another connection is refused
rather than trusted on the strength of a guessed session id).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...rpc import Connection
from ...store import new_id


@dataclass(slots=True)
class Session:
    session_id: str
    node_id: str
    connection: Connection | None
    features: frozenset[str] = frozenset()
    """What the worker said it understands beyond the base contract (proto/dispatcher.py)."""


class SessionTable:
    """At most one session per node: a re-opened session replaces the old one (as when a
    worker reconnects after a network blip before its old connection has timed out)."""

    def __init__(self) -> None:
        self._by_node: dict[str, Session] = {}
        self._by_id: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._by_node)

    def open(self, node_id: str, connection: Connection | None,
             features: frozenset[str] = frozenset()) -> Session:
        self.drop_node(node_id)
        session = Session(new_id(), node_id, connection, features)
        self._by_node[node_id] = session
        self._by_id[session.session_id] = session
        if connection is not None:
            connection.add_close_callback(lambda: self.drop(session))
        return session

    def get(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    def node_ids(self) -> list[str]:
        return list(self._by_node)

    def for_node(self, node_id: str) -> Session | None:
        return self._by_node.get(node_id)

    def drop(self, session: Session) -> None:
        """Forget ``session`` if it is still current (a replaced one is already gone)."""
        if self._by_id.pop(session.session_id, None) is not None:
            if self._by_node.get(session.node_id) is session:
                del self._by_node[session.node_id]

    def drop_node(self, node_id: str) -> None:
        session = self._by_node.pop(node_id, None)
        if session is not None:
            self._by_id.pop(session.session_id, None)

    def clear(self) -> None:
        self._by_node.clear()
        self._by_id.clear()
