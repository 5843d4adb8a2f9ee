"""Majority arithmetic for "may this manager leave the Raft group?".

Kept pure (a list of members in, a verdict out) so the rule is tested on its own and the same
function answers demote and force-remove. It mirrors swarmkit's `CanRemoveMember`: after the
member is gone, the reachable voters that remain must still be a majority of the voters that
remain, otherwise the cluster would stop being able to commit anything - including the change
that would let an operator repair it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..context import RaftMember


def member_for(members: Iterable[RaftMember], node_id: str) -> RaftMember | None:
    for m in members:
        if m.node_id and m.node_id == node_id:
            return m
    return None


def can_remove_member(members: Iterable[RaftMember], node_id: str) -> bool:
    """True if removing `node_id`'s member keeps a reachable majority of voters.

    A node that is not a member, or only a learner (not counted in quorums), can always go.
    Removing the last voter is never allowed.
    """
    members = list(members)
    leaving = member_for(members, node_id)
    if leaving is None or not leaving.voter:
        return True
    remaining = [m for m in members if m.voter and m is not leaving]
    if not remaining:
        return False
    reachable = sum(1 for m in remaining if m.reachable)
    return reachable >= len(remaining) // 2 + 1


def quorum_summary(members: Iterable[RaftMember]) -> tuple[int, int]:
    """(reachable voters, total voters), for messages and info."""
    voters = [m for m in members if m.voter]
    return sum(1 for m in voters if m.reachable), len(voters)
