"""Majority arithmetic, kept apart so it can be read (and tested) on its own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def majority(n: int) -> int:
    return n // 2 + 1


def committed_index(voters: Iterable[int], match: Mapping[int, int]) -> int:
    """The highest index stored on a majority of voters."""
    idx = sorted((match.get(v, 0) for v in voters), reverse=True)
    if not idx:
        return 0
    return idx[majority(len(idx)) - 1]


def vote_result(voters: Iterable[int], votes: Mapping[int, bool]) -> bool | None:
    """True: won; False: lost; None: still undecided."""
    voters = list(voters)
    q = majority(len(voters))
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    if granted >= q:
        return True
    if len(voters) - rejected < q:
        return False
    return None
