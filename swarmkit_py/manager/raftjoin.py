"""Managers entering and leaving the Raft group, as RPCs on the cluster port.

A joining manager first asks any manager for the current members (`raft.members`) so it can
answer the leader as soon as the leader starts replicating to it, starts its empty Raft member,
and then asks the leader to add it (`raft.join`): learner first, voter once caught up, so a new
manager never weakens quorum while it still lacks most of the log.
"""

from __future__ import annotations

import asyncio
import random

from ..ca import CertRole, expect_manager
from ..proto import (
    NO_QUORUM,
    NOT_FOUND,
    NOT_LEADER,
    PERMISSION_DENIED,
    RAFT_JOIN,
    RAFT_MEMBERS,
    UNAVAILABLE,
)
from ..raft.errors import NoQuorum, NotLeader, RaftError
from ..rpc import PeerInfo, RpcClient, RpcError
from ..store import ManagerStatus, Transaction
from .caserver import require_identity


def raft_error(e: RaftError, manager) -> RpcError:
    if isinstance(e, NotLeader):
        addr = manager.raft.peers.get(e.leader_hint, "") if e.leader_hint else ""
        return RpcError(NOT_LEADER, addr or "no leader known")
    if isinstance(e, NoQuorum):
        return RpcError(NO_QUORUM, str(e))
    return RpcError(UNAVAILABLE, str(e))


class RaftMembership:
    """Server side, registered on every manager's RPC server."""

    def __init__(self, manager):
        self.m = manager
        manager.rpc.add_handler(RAFT_MEMBERS, self._members)
        manager.rpc.add_handler(RAFT_JOIN, self._join)

    def _current_manager(self, peer: PeerInfo, action: str):
        """The caller, if its certificate is a manager's and the store still says so."""
        ident = require_identity(peer, {"manager"}, action=action)
        reason = self.m.revocation.manager_refusal(ident)
        if reason is not None:
            raise RpcError(PERMISSION_DENIED, f"{action}: {reason}")
        return ident

    async def _members(self, peer: PeerInfo, params):
        self._current_manager(peer, RAFT_MEMBERS)
        book = dict(self.m.raft.peers)
        book[self.m.raft_id] = self.m.advertise_addr
        return {"members": {str(k): v for k, v in book.items()}, "leader": self.m.raft.leader_id}

    async def _join(self, peer: PeerInfo, params):
        ident = self._current_manager(peer, RAFT_JOIN)
        raft_id, addr = int(params["raft_id"]), str(params["addr"])
        if not self.m.raft.is_leader:
            raise raft_error(NotLeader(self.m.raft.leader_id), self.m)
        node = self.m.store.view().get_node(ident.node_id)
        if node is None:
            raise RpcError(NOT_FOUND, f"node {ident.node_id} is not part of this swarm")
        try:
            if node.raft_id != raft_id:
                # a manager that lost its disk comes back with a new raft id: drop the old one
                if node.raft_id and node.raft_id in self.m.raft.peers:
                    await self.m.raft.remove_member(node.raft_id)
                n = node.clone()
                n.raft_id = raft_id
                if n.manager_status is None:
                    n.manager_status = ManagerStatus(addr=addr)
                else:
                    n.manager_status.addr = addr
                await self.m.proposer.propose(Transaction().update(n))
            await self.m.raft.add_member(raft_id, addr, timeout=float(params.get("timeout", 60)))
        except RaftError as e:
            raise raft_error(e, self.m) from None
        return {"members": {str(k): v for k, v in self.m.raft.peers.items()}}


def _manager_client(addr: str, ssl, cluster_id: str | None, timeout: float) -> RpcClient:
    """A client of whichever manager is at `addr`, refusing any server that is not one (a
    worker that took over the address must not learn of, or take part in, our join)."""
    host, _, port = addr.rpartition(":")
    return RpcClient(
        host.strip("[]"), int(port), ssl=ssl, timeout=timeout, connect_timeout=2,
        server_hostname=CertRole.MANAGER.value if ssl is not None else None,
        verify_peer=expect_manager(cluster_id) if ssl is not None else None,
    )


async def fetch_members(addrs: list[str], ssl, cluster_id: str | None = None) -> dict[int, str]:
    last: Exception | None = None
    for a in addrs:
        c = _manager_client(a, ssl, cluster_id, 5)
        try:
            r = await c.call(RAFT_MEMBERS, {})
            return {int(k): v for k, v in r["members"].items()}
        except (RpcError, OSError) as e:
            last = e
        finally:
            await c.close()
    raise RuntimeError(f"no manager answered at {', '.join(addrs)}: {last}")


async def request_join(
    addrs: list[str], ssl, raft_id: int, my_addr: str, timeout: float = 120.0,
    cluster_id: str | None = None,
) -> None:
    """Ask the leader to add us, following "not leader" hints; retries until `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    queue = list(addrs)
    last = ""
    while loop.time() < deadline:
        if not queue:
            queue = list(addrs)
            await asyncio.sleep(0.2 + random.random() * 0.2)
        a = queue.pop(0)
        c = _manager_client(a, ssl, cluster_id, timeout)
        try:
            await c.call(RAFT_JOIN, {"raft_id": raft_id, "addr": my_addr, "timeout": 60})
            return
        except RpcError as e:
            last = f"{a}: {e.message}"
            if e.code == NOT_LEADER and ":" in e.message:
                queue.insert(0, e.message)
        except OSError as e:
            last = f"{a}: {e}"
        finally:
            await c.close()
    raise RuntimeError(f"could not join the managers' Raft group: {last}")
