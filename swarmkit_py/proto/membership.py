"""Managers entering the Raft group (served and called by ``manager/raftjoin.py``), and moving
its leadership (``manager/manager.py``).

A ``not_leader`` answer to ``raft.join`` carries the leader's ``host:port`` as its whole
message (older than the dispatcher's ``leader_addr=`` tail, and kept so that managers of the
previous release can still join during a rolling upgrade).
"""

from __future__ import annotations

RAFT_MEMBERS = "raft.members"
"""``{}`` -> ``{"members": {raft_id: "host:port"}, "leader": raft_id | None, "self": raft_id}``
(``self``: the answering manager's own member, so a caller can tell the leader's answer)."""
RAFT_JOIN = "raft.join"
"""``{raft_id, addr, timeout}`` -> ``{"members": {...}}``; the leader adds the caller."""
RAFT_TRANSFER = "raft.transfer_leadership"
"""``{"to": node_id | None, "timeout": float}`` -> ``{"leader": node_id}``; manager certificates
only. Any manager accepts the request from its API; a follower forwards it with this call to the
leader, which hands leadership over (Raft's TimeoutNow) and answers once the target leads."""
