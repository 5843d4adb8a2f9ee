"""Typed errors a caller of Raft can act on: retry elsewhere, retry later, or give up."""

from __future__ import annotations


class RaftError(Exception):
    pass


class NotLeader(RaftError):
    """This member cannot serve the request; `leader_hint` is the member it believes leads
    (0 when it knows none), so the caller can go there instead of guessing."""

    def __init__(self, leader_hint: int = 0, message: str | None = None):
        self.leader_hint = leader_hint
        super().__init__(message or f"not the leader (leader hint: {leader_hint or 'none'})")


class ProposalDropped(RaftError):
    """The proposal never entered the log (no leader known, leadership transfer under way,
    another membership change still pending): safe to retry, nothing was written."""


class NoQuorum(RaftError):
    """The request could not be committed in time: too few members are reachable. The write
    may or may not eventually apply; the cluster refuses to pretend either way."""

    def __init__(self, message: str | None = None):
        super().__init__(
            message
            or "no quorum: the write could not be committed because fewer than a majority of "
            "managers are reachable; bring managers back online (or recover with "
            "--force-new-cluster if they are lost for good)"
        )


class LeadershipLost(NoQuorum):
    """This member led when the write was proposed, then stepped down because a majority of
    members stopped answering it (check-quorum: it is cut off, and a new leader may be elected
    on the other side). The write is in its log but not committed: a later leader may still
    commit it or drop it, and this member cannot tell which while it stays cut off. So the
    caller is told at once (as hashicorp/raft's ErrLeadershipLost) instead of at its timeout,
    and should read the current state and retry through another member."""

    def __init__(self, message: str | None = None):
        super().__init__(
            message
            or "leadership lost while the write was in flight: this manager stopped hearing from "
            "a majority of managers and stepped down as leader, so the write may or may not be "
            "applied by the next leader; read the current state and retry (through another "
            "manager if this one stays cut off)"
        )


class CutOff(NoQuorum):
    """This member stepped down as leader because a majority stopped answering it, and still
    hears from fewer than a majority: nothing can commit through it, and the others may have a
    leader already. Sent elsewhere, the request may succeed."""

    def __init__(self, message: str | None = None):
        super().__init__(
            message
            or "no quorum through this manager: it lost contact with a majority of managers and "
            "stepped down as leader; the other managers may have elected a new leader: send the "
            "request to another manager"
        )


class Stopped(RaftError):
    """The member is shutting down or was removed from the cluster."""

    def __init__(self, message: str = "raft member stopped"):
        super().__init__(message)


class DiskFull(Stopped):
    """The member stopped because its disk is full: it could not make an entry or its vote
    durable, so it takes no further part (nothing it has not persisted is acknowledged). The
    agent restarts it from its files once space is freed."""

    def __init__(self, directory: str, cause: BaseException | None = None):
        self.directory = directory
        why = f" ({cause})" if cause else ""
        super().__init__(
            f"this manager's disk is full: it cannot write its Raft log in {directory}{why}, so it "
            "stopped taking part in the cluster and accepts no writes or reads; the other managers "
            "carry on if they keep a quorum. Free space on that filesystem: the manager rejoins "
            "by itself, from its log, within seconds"
        )
