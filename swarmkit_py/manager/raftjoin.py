"""Managers entering and leaving the Raft group, as RPCs on the cluster port.

A joining manager first asks any manager for the current members (`raft.members`) so it can
answer the leader as soon as the leader starts replicating to it, starts its empty Raft member,
and then asks the leader to add it (`raft.join`): learner first, voter once caught up, so a new
manager never weakens quorum while it still lacks most of the log.

A member can also be removed without learning it: a manager demoted and promoted again
before its certificate was renewed keeps a manager's certificate and its old Raft id, but the
leader stopped replicating to that id the moment the removal was applied, so the member just
campaigns on, unheard (swarmkit's ErrMemberRemoved case). `RemovalWatch` notices it: once a
member that used to be in the group has known no leader for a while, it asks the managers it
knows; the leader's own answer, twice, without this member's id means it was removed (and a
refusal because the node was demoted means the same), and the owner (the agent) renews its
certificate: a worker's carries out the demotion, a manager's makes it join again as a new
member with a new id, as swarmkit's node does after wiping its Raft state.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from ..background import Background
from ..ca import CertRole, expect_manager
from ..proto import (
    FAILED_PRECONDITION,
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
from ..store.objects.enums import NodeRole
from .caserver import require_identity

log = logging.getLogger(__name__)


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
        return {"members": {str(k): v for k, v in book.items()}, "leader": self.m.raft.leader_id,
                "self": self.m.raft_id}

    async def _join(self, peer: PeerInfo, params):
        ident = self._current_manager(peer, RAFT_JOIN)
        raft_id, addr = int(params["raft_id"]), str(params["addr"])
        if not self.m.raft.is_leader:
            raise raft_error(NotLeader(self.m.raft.leader_id), self.m)
        node = self.m.store.view().get_node(ident.node_id)
        if node is None:
            raise RpcError(NOT_FOUND, f"node {ident.node_id} is not part of this swarm")
        if node.spec.role != NodeRole.MANAGER:
            raise RpcError(FAILED_PRECONDITION, f"node {ident.node_id} is being demoted: it may "
                                                "not join the managers' Raft group")
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


class RemovalWatch:
    """Notices that this manager's Raft member was removed from the group, whether it applied
    its removal or never learnt it (see the module's docstring), and calls ``on_removed``
    once."""

    GRACE = 3.0
    """Seconds without a leader before the managers are asked (an election takes less)."""
    PERIOD = 1.0
    STRIKES = 2
    """Consecutive answers of a leader without this member before it is taken as removed (a
    leader elected a moment ago may not have applied every membership change yet)."""

    def __init__(self, manager, client_ssl, on_removed: Callable[[], None]) -> None:
        self.m = manager
        self.client_ssl = client_ssl
        self.on_removed = on_removed
        self._loop = Background("raft-removal-watch", self._run)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        raft, me = self.m.raft, self.m.raft_id
        loop = asyncio.get_running_loop()
        was_member = False
        leaderless_since: float | None = None
        removed_since: float | None = None
        strikes = 0
        while True:
            await asyncio.sleep(self.PERIOD)
            core = raft.core
            if core is None:
                continue
            now = loop.time()
            if core.removed:
                # It applied its own removal: final (a Raft id is never added back). A removed
                # member never campaigns, so it keeps naming its old leader and the leaderless
                # check below never fired: a demotion undone at once left the manager outside
                # the group for good whenever it had learnt of its removal. The grace lets a
                # plain demotion's certificate renewal (a worker's) come first, as it does
                # within a moment of the removal.
                removed_since = now if removed_since is None else removed_since
                if now - removed_since >= self.GRACE:
                    return self._removed("it applied the configuration change that removed it")
                continue
            # a joiner not added yet is not "removed": it has neither a log nor a configuration
            # with itself in it (a log arrives only once the leader added it)
            was_member = was_member or me in core.conf.voters or me in core.conf.learners \
                or core.log.last_index() > 0
            if raft.leader_id or not was_member:
                leaderless_since, strikes = None, 0
                continue
            if leaderless_since is None:
                leaderless_since = now
            if now - leaderless_since < self.GRACE:
                continue
            verdict = await self._ask_leader()
            strikes = strikes + 1 if verdict else 0
            if strikes >= self.STRIKES:
                return self._removed(verdict)

    async def _ask_leader(self) -> str | None:
        """Why the leader says this member is not in the group, or None (no leader answered,
        or it counts this member in)."""
        me = self.m.raft_id
        for addr in [a for nid, a in dict(self.m.raft.peers).items() if nid != me and a]:
            c = _manager_client(addr, self.client_ssl, self.m.cluster_id, 3)
            try:
                r = await c.call(RAFT_MEMBERS, {})
            except RpcError as e:
                if e.code == PERMISSION_DENIED:  # demoted: the certificate renewal says so
                    return f"the manager at {addr} refuses it: {e.message}"
                continue
            except (OSError, TimeoutError):
                continue
            finally:
                await c.close()
            if r.get("leader") and r.get("leader") == r.get("self"):
                members = r.get("members") or {}
                if str(me) in members:
                    return None
                return f"the leader at {addr} lists {len(members)} members without it"
        return None

    def _removed(self, why: str) -> None:
        log.warning("raft member %d was removed from the managers' group (%s); renewing this "
                    "node's certificate to learn its role", self.m.raft_id, why)
        self.on_removed()
