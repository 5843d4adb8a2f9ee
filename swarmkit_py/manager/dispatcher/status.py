"""Batched node status writes: many nodes changing at once become one Raft entry.

After an election hundreds of workers re-open their sessions within the same second, and a
network split can expire as many heartbeats in one sweep. One proposal per node would queue
hundreds of Raft entries; instead, changes requested while a proposal is in flight are merged
into the next transaction (group commit). A change that would leave the stored node as it is
is not written at all, which is why reconnecting to a new leader costs no write for a node
that is already Ready with the same description and address.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ...store import Node, NodeDescription, NodeState, NotFound, SequenceError, Transaction
from ..proposer import Proposer
from .groupcommit import MAX_CONFLICT_RETRIES, GroupCommitter

log = logging.getLogger(__name__)

_UNSET = object()


@dataclass(frozen=True, slots=True)
class StatusChange:
    """The status a node should have; ``description``/``addr`` of None keep the stored ones."""

    state: NodeState
    message: str | None = None
    addr: str | None = None
    description: NodeDescription | None = None
    only_if: NodeState | None = None
    """Apply only while the stored state is still this (an expiry must not overwrite a Ready
    written by a session that raced it; the session's own write always applies)."""


def apply_change(node: Node, change: StatusChange) -> Node | None:
    """The updated node, or None if the change would not alter anything stored."""
    if change.only_if is not None and node.status.state != change.only_if:
        return None
    status = node.status
    addr = change.addr if change.addr is not None else status.addr
    description = change.description if change.description is not None else node.description
    if (
        status.state == change.state
        and status.message == change.message
        and status.addr == addr
        and node.description == description
    ):
        return None
    # Shallow copies: the proposer only encodes the new object (the store keeps what it
    # decodes), so sharing the unchanged parts with the stored node is safe, and a deep copy
    # of every node that changes state was a large part of a big cluster's status writes.
    update: dict = {"status": status.model_copy(update={"state": change.state, "message": change.message,
                                                         "addr": addr})}
    if change.description is not None:
        update["description"] = change.description.model_copy(deep=True)
    return node.model_copy(update=update)


class StatusWriter(GroupCommitter):
    """Queues per-node changes and proposes them in as few transactions as possible.

    ``submit`` returns a future resolved once the change is committed (True), found to be a
    no-op (False), or failed: ``NotFound`` for a node missing from the store, or whatever the
    proposer raised (no quorum, lost leadership). Later changes for the same node supersede
    queued ones; both futures then get the later outcome.
    """

    task_name = "dispatcher-status-writer"

    def __init__(self, proposer: Proposer) -> None:
        super().__init__(proposer)
        self._pending: dict[str, tuple[StatusChange, list[asyncio.Future]]] = {}
        self.nodes_written = 0

    def submit(self, node_id: str, change: StatusChange) -> asyncio.Future:
        return self._submit((node_id, change))

    def _enqueue(self, item, fut: asyncio.Future) -> None:
        node_id, change = item
        _, futures = self._pending.get(node_id, (None, []))
        futures.append(fut)
        self._pending[node_id] = (change, futures)

    def _take(self) -> dict:
        batch, self._pending = self._pending, {}
        return batch

    def _requeue(self, batch: dict) -> None:
        for node_id, entry in batch.items():
            self._pending.setdefault(node_id, entry)

    def _fail_queued(self, reason: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for _, futures in pending.values():
            _resolve(futures, exc=reason)

    async def _write(self, batch: dict[str, tuple[StatusChange, list[asyncio.Future]]]) -> None:
        for _attempt in range(MAX_CONFLICT_RETRIES):
            view = self._proposer.store.view()
            tx = Transaction(handed_over=True)  # never touched once proposed
            outcome: dict[str, object] = {}
            for node_id, (change, _) in batch.items():
                node = view.get_node(node_id)
                if node is None:
                    outcome[node_id] = NotFound.for_ref("node", node_id)
                    continue
                new = apply_change(node, change)
                if new is None:
                    outcome[node_id] = False
                else:
                    tx.update(new)
                    outcome[node_id] = True
            if not len(tx):
                break
            try:
                await self._proposer.propose(tx)
            except SequenceError:
                # Someone (the API, the role manager) updated one of these nodes meanwhile;
                # the whole entry was refused, so re-read and rebuild it.
                log.debug("node status batch conflicted; retrying with a fresh read")
                continue
            except Exception as e:
                for _, futures in batch.values():
                    _resolve(futures, exc=e)
                return
            self.transactions += 1
            self.nodes_written += len(tx)
            break
        else:
            err = SequenceError("node status update kept conflicting with other writes")
            for _, futures in batch.values():
                _resolve(futures, exc=err)
            return
        for node_id, (_, futures) in batch.items():
            result = outcome[node_id]
            if isinstance(result, BaseException):
                _resolve(futures, exc=result)
            else:
                _resolve(futures, result=result)


def _resolve(futures: list[asyncio.Future], result: object = _UNSET, exc=None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
