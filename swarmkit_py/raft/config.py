"""Timing and sizing of a Raft member, validated where it is read (agent config, tests, bench).

Defaults target a LAN: a 50 ms tick, heartbeats every 100 ms and an election timeout drawn from
[300, 600) ms, so a dead leader is replaced in well under a second (Docker Swarm's defaults,
a 1 s tick and 10 ticks, take 10-20 s). Ticks count only time the member's event loop was free,
and a follower's grow with its leader's recent silences (`max_election_stretch`, node.py), so a
busy manager on a loaded machine is not deposed for being slow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from .core import CoreConfig

# The core is imported by `core()`, i.e. where a Raft member starts, not here: every agent
# reads this model from its config file, and a worker's never runs Raft.


class RaftConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tick_ms: int = Field(50, ge=1, le=10_000, description="length of one logical tick")
    heartbeat_ticks: int = Field(2, ge=1, description="leader heartbeat period, in ticks")
    election_ticks: int = Field(6, ge=2, description="minimum election timeout, in ticks (randomized up to 2x)")
    max_inflight: int = Field(256, ge=1, description="append messages in flight per follower")
    max_msg_bytes: int = Field(1 << 20, ge=1024, description="entry payload bytes per append message")
    max_batch: int = Field(2048, ge=1, description="proposals taken into one loop turn (one fsync)")
    snapshot_interval: int = Field(10_000, ge=1, description="applied entries between snapshots")
    keep_entries: int = Field(2_000, ge=0, description="entries kept behind a snapshot for slow followers")
    apply_slice_ms: float = Field(
        20.0, gt=0, description="committed entries are applied about this much event loop time "
        "per Ready, the rest in the next one, with the loop handed back and this member's "
        "messages stepped in between (one entry is never split)")
    proposal_timeout_s: float = Field(5.0, gt=0, description="a write that cannot commit in this time fails with NoQuorum")
    leader_wait_s: float = Field(2.0, ge=0, description="how long a write waits for a leader to be elected")
    max_election_stretch: float = Field(
        10.0, ge=1.0, le=100.0, description="a follower's election timeout grows with the longest "
        "recent silence of its leader (two of them must fit in it), up to this many times "
        "election_ticks; 1 turns the adaptation off")
    pre_vote: bool = True
    check_quorum: bool = True

    @model_validator(mode="after")
    def _check(self) -> RaftConfig:
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError(
                f"election_ticks ({self.election_ticks}) must exceed heartbeat_ticks "
                f"({self.heartbeat_ticks}), or followers time out between heartbeats"
            )
        return self

    def core(self) -> CoreConfig:
        from .core import CoreConfig

        return CoreConfig(
            election_tick=self.election_ticks,
            heartbeat_tick=self.heartbeat_ticks,
            max_inflight=self.max_inflight,
            max_msg_bytes=self.max_msg_bytes,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            check_quorum_tick=2 * self.election_ticks,
        )

    @property
    def election_timeout_s(self) -> float:
        return self.election_ticks * self.tick_ms / 1000.0
