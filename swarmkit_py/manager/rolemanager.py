"""The role manager (swarmkit's manager/role_manager.go): moves each node's actual role
towards its desired `Spec.Role`, and keeps Raft membership in step with the node list.

- promote: the node's `role` becomes manager; its agent sees that (through its session),
  renews its certificate as a manager and joins Raft through `raft.join` (learner first).
- demote: the member is removed from Raft first — only if the managers left would still
  have a quorum of reachable members — then the node's `role` becomes worker. A leader being
  demoted hands leadership over first and lets its successor finish the job.
- a node removed with `node rm --force` while it was a manager loses its Raft membership.

It runs on the leader only and reacts to store events, with a slow periodic pass to retry
what could not be done yet (a quorum that was not there, a transfer that failed).
"""

from __future__ import annotations

import logging

from ..background import Background
from ..raft.errors import RaftError
from ..store import StoreError, Transaction
from ..store.follow import StoreFollower
from ..store.objects.enums import NodeRole

log = logging.getLogger("swarmkit_py.manager.roles")


def quorum_after_removal(members, removing: int) -> bool:
    """Would the voters left after removing `removing` still have a reachable majority?"""
    left = [m for m in members if m.voter and m.raft_id != removing]
    if not left:
        return False
    reachable = sum(1 for m in left if m.reachable)
    return reachable >= len(left) // 2 + 1


class RoleManager:
    def __init__(self, manager, period: float = 1.0):
        self.m = manager
        self.period = period
        self._loop = Background("role-manager", self._run)
        self._last_count = 0

    @property
    def running(self) -> bool:
        return self._loop.running

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        await StoreFollower(self.m.store, "node", name="role manager").repeat(self.reconcile, every=self.period)

    async def reconcile(self) -> None:
        m = self.m
        if not m.raft.is_leader:
            return
        nodes = m.store.view().nodes()
        by_id = {n.id: n for n in nodes}
        tx = Transaction()
        for n in nodes:
            want = n.spec.role
            if want == NodeRole.MANAGER and n.role != NodeRole.MANAGER:
                c = n.clone()
                c.role = NodeRole.MANAGER
                tx.update(c)
                log.info("promoting node %s", n.id)
            elif want == NodeRole.WORKER and n.role == NodeRole.MANAGER:
                if await self._demote(n):
                    c = m.store.view().get_node(n.id).clone()
                    c.role = NodeRole.WORKER
                    c.raft_id = None
                    c.manager_status = None
                    tx.update(c)
        managers = sum(1 for n in nodes if n.spec.role == NodeRole.MANAGER)
        if managers != self._last_count:
            self._last_count = managers
            if managers % 2 == 0:
                log.warning(
                    "the swarm has %d managers: an even number tolerates no more failures than %d "
                    "(quorum %d); use an odd number", managers, managers - 1, managers // 2 + 1,
                )
        if tx.ops:
            try:
                await m.proposer.propose(tx)
            except StoreError as e:
                log.info("role change raced with another update (%s); retrying", e)
        # Raft members whose node object is gone (node rm --force of a dead manager).
        known = {n.raft_id for n in by_id.values() if n.raft_id}
        for member in m.raft_members():
            if member.raft_id != m.raft_id and member.raft_id not in known and member.node_id == "":
                # A joining manager's raft id is written to its node before it is added, so an
                # unknown member really is one whose node was removed.
                try:
                    await m.raft.remove_member(member.raft_id)
                    log.info("removed raft member %d of a deleted node", member.raft_id)
                except RaftError as e:
                    log.info("could not remove raft member %d yet: %s", member.raft_id, e)

    async def _demote(self, node) -> bool:
        m = self.m
        rid = node.raft_id
        members = m.raft_members()
        if rid is None or rid not in {x.raft_id for x in members}:
            return True
        if rid == m.raft_id:
            try:
                await m.raft.transfer_leadership()
            except (RaftError, ValueError) as e:
                log.warning("demoting the leader: leadership transfer failed (%s); will retry", e)
            return False
        if not quorum_after_removal(members, rid):
            log.warning("not demoting node %s yet: the remaining managers would lack a quorum", node.id)
            return False
        try:
            await m.raft.remove_member(rid)
        except RaftError as e:
            log.info("demotion of %s: raft removal failed (%s); will retry", node.id, e)
            return False
        return True
