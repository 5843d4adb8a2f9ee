"""What the control API and the control loops may ask of the manager they run in.

The Manager implements this; unit tests implement it with a LocalProposer and fixed answers.
Keeping it this narrow is what lets the API layer and the loops be written and tested without
a Raft group, and keeps the arrows pointing down (api -> manager -> store/raft).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .proposer import Proposer


@dataclass(frozen=True)
class RaftMember:
    """One Raft member as seen from this manager right now (not stored: it changes with every
    heartbeat, so it is overlaid on Node.ManagerStatus when the API answers)."""

    raft_id: int
    node_id: str  # the Swarm node id of that manager ("" if not known yet)
    addr: str  # host:port of its cluster listener (2377)
    voter: bool
    reachable: bool
    leader: bool


class ClusterContext(Protocol):
    proposer: Proposer  # .store for reads, .propose(tx) for writes

    @property
    def node_id(self) -> str:
        """This node's Swarm node id."""

    def is_leader(self) -> bool: ...

    def leader_node_id(self) -> str | None:
        """Node id of the current Raft leader, None when there is none (no quorum)."""

    def raft_members(self) -> list[RaftMember]: ...

    def last_contact(self, node_id: str) -> float | None:
        """Seconds since this manager's Raft member last heard from the Raft member of
        ``node_id``; None when that node is not a manager."""

    # Optional: `host_silent(node_id) -> bool`, kernel evidence that a manager's host is down
    # (Manager.host_silent); the dispatcher uses it when the context has it.

    def add_leader_listener(self, listener: Callable[[int, int], None]) -> None:
        """``listener(leader_raft_id, term)`` each time the Raft leader changes (or is lost)."""

    async def transfer_leadership(self, to: str | None = None, timeout: float = 10.0) -> str:
        """Move Raft leadership to manager node ``to`` (None: the best other voter); returns
        the new leader's node id. ValueError for a target that cannot lead; raft's NoQuorum
        when there is no leader or the transfer did not complete."""

    async def read_barrier(self, timeout: float | None = None) -> None:
        """Wait until the local store reflects every committed write (ReadIndex); raises
        raft's NoQuorum when no leader confirms within `timeout` (default: the proposal
        timeout)."""

    # Optional, callable from another thread (Manager's): `lone_read_index() -> int | None`,
    # `raft_applied_index() -> int`, `read_index_threadsafe() -> concurrent Future[int]` and
    # `forget_read(future)`: the API's front thread confirms reads with them (`api/front.py`).

    # Optional: `raft_settings() -> dict[str, int]`, the Raft settings this manager runs with
    # as Docker's Spec.Raft JSON; the API shows them when the context has it.
