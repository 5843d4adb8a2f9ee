"""Tuning of the pure core, counted in ticks (the driver decides how long a tick is)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CoreConfig:
    election_tick: int = 10  # followers wait a random [election_tick, 2*election_tick) ticks
    heartbeat_tick: int = 1
    max_inflight: int = 256  # appends in flight per follower before the leader waits
    max_msg_bytes: int = 1 << 20  # payload bytes per append message
    max_apply_entries: int = 4096  # committed entries handed out per Ready
    pre_vote: bool = True
    check_quorum: bool = True
    # A leader steps down when it has not heard from a majority for this many ticks (0: one
    # election timeout, as etcd-io/raft). Longer tolerates a slow, busy follower process
    # without deposing a healthy leader; a cut-off leader only keeps its title a bit longer
    # (it can commit nothing meanwhile).
    check_quorum_tick: int = 0

    def __post_init__(self) -> None:
        if self.heartbeat_tick < 1:
            raise ValueError("heartbeat_tick must be >= 1")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError(
                f"election_tick ({self.election_tick}) must be greater than heartbeat_tick "
                f"({self.heartbeat_tick}): followers would time out between heartbeats"
            )
        if self.max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        if self.max_msg_bytes < 1:
            raise ValueError("max_msg_bytes must be >= 1")
