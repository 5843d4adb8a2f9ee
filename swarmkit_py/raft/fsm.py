"""The interface between Raft and whatever it replicates (hashicorp/raft calls it the FSM).

The node driver applies each committed NORMAL entry, in log order, on every member, and hands
the return value of `apply` back to the caller that proposed the entry (on the member where it
was proposed). The store is the one real implementation; tests use small ones.
"""

from __future__ import annotations

from typing import Any, Protocol


class StateMachine(Protocol):
    def apply(self, index: int, data: bytes) -> Any:
        """Apply one committed command. Must be deterministic: every member applies the same
        bytes in the same order and must end in the same state. Raising is a bug in the
        state machine, not a way to reject a command: return an error value instead."""

    # Optional: `apply_local(index, data, local) -> Any`, called instead of `apply` for an
    # entry proposed here with `RaftNode.propose(data, local=...)`, while its proposer waits:
    # `local` is what `data` was made from. It must reach the state `apply` would.
    # Optional too: `prepare_steps(data)`, a generator that pauses now and then and returns P
    # (it may change nothing `apply` reads), and `apply_prepared(index, P) -> Any`: together
    # what `apply(index, data)` does. A member decodes big entries of others that way, a
    # slice at a time, answering its peers between slices.

    def snapshot(self) -> bytes:
        """Serialize the whole state as of the last applied entry."""

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot produced by `snapshot`."""
