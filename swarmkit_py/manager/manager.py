"""One manager: a Raft member replicating the store, plus the control plane on top of it.

Every manager serves reads from its own store and forwards writes to the leader (through
Raft's proposal forwarding). Control loops that make decisions — dispatcher, role manager and,
later, orchestrators and scheduler — run only on the leader; they are started when this member
wins an election and stopped when it loses leadership, and meet each other only via the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from ..ca import PermissionDeniedError, require_manager_cert
from ..proto import INVALID_ARGUMENT, NOT_LEADER, PERMISSION_DENIED, RAFT_TRANSFER, UNAVAILABLE
from ..raft.config import RaftConfig
from ..raft.errors import NoQuorum, NotLeader, RaftError
from ..raft.node import RaftNode
from ..raft.storage import DiskStorage
from ..raft.storage.snapshots import KEEP
from ..raft.transport import Transport
from ..rpc import PeerInfo, RpcClient, RpcError, RpcServer
from ..store import MemoryStore, Node, NodeState
from .autolock import KEKWatcher
from .context import RaftMember
from .proposer import RaftProposer
from .revocation import Revocation

log = logging.getLogger("swarmkit_py.manager")


LoopFn = Callable[[], Awaitable[None]]


def _down(node: Node | None) -> bool:
    """A follower hears only from the leader: an open TCP connection to a manager whose host
    lost power still looks fine, but the dispatcher will have declared that node down."""
    return node is not None and node.status.state == NodeState.DOWN


class Manager:
    def __init__(
        self,
        *,
        node_id: str,
        raft_id: int,
        state_dir: str | Path,
        advertise_addr: str,
        rpc_server: RpcServer,
        client_ssl=None,
        raft_config: RaftConfig | None = None,
        unlock_key: bytes | None = None,
        ca_key_path: Path | None = None,
    ):
        """Opens the Raft state encrypted (migrating a plaintext one): raises raft.storage's
        SwarmLockedError when it is auto-locked and no `unlock_key` is given, and
        InvalidUnlockKeyError when the key is wrong. `ca_key_path`: where the CA signing key is
        exported for `client-cert` while auto-lock is off (see autolock.KEKWatcher)."""
        self._node_id = node_id
        self.raft_id = raft_id
        self.advertise_addr = advertise_addr
        self.store = MemoryStore()
        self.rpc = rpc_server
        # Only current managers may send Raft messages: not a worker's certificate, nor none
        # (the cluster port allows that for joining nodes), nor a removed or demoted node's.
        # The transport asks once per connection; Revocation cuts the connections of a node
        # that loses the role.
        self.revocation = Revocation(self.store, rpc_server)
        host, _, port = advertise_addr.rpartition(":")
        raft_dir = Path(state_dir) / "raft"
        storage = DiskStorage(raft_dir, encrypted=True, unlock_key=unlock_key)
        self.raft = RaftNode(
            raft_id,
            raft_dir,
            self.store,
            lambda on_msg, **reports: Transport(
                raft_id, host, int(port), on_msg, rpc_server=rpc_server, client_ssl=client_ssl,
                server_hostname="swarm-manager" if client_ssl else None, authorize=self.revocation.is_current_manager,
                verify_server=self._verify_raft_server if client_ssl else None, **reports,
            ),
            raft_config,
            addr=advertise_addr,
            storage=storage,
        )
        self.proposer = RaftProposer(self.raft, self.store)
        self.kek_watcher = KEKWatcher(self.store, storage, ca_key_path)
        self._client_ssl = client_ssl
        rpc_server.add_handler(RAFT_TRANSFER, self._handle_transfer)
        self._leader_loops: list[tuple[str, LoopFn, LoopFn]] = []
        self._leading = False
        self._leading_term = 0
        """The term the running leader loops were started in."""
        self._leadership_task: asyncio.Task | None = None
        self._leader_event = asyncio.Event()
        self._leader_listeners: list[Callable[[int, int], None]] = []
        self.raft.on_leader_change = self._on_leader_change

    def _verify_raft_server(self, raft_id: int, server) -> None:
        """Raft appends and snapshots carry the whole store, the CA key included: send them
        only to a manager of this cluster, and to the node the store says holds that Raft
        member, when it says (a manager still catching up may not know its peers' nodes yet).
        """
        view = self.store.view()
        cluster = view.cluster()
        node = next((n for n in view.nodes() if n.raft_id == raft_id), None)
        require_manager_cert(
            server.cert,
            node_id=node.id if node is not None else None,
            cluster_id=cluster.id if cluster is not None else None,
        )

    # ---------------------------------------------------------------- ClusterContext
    @property
    def node_id(self) -> str:
        return self._node_id

    def is_leader(self) -> bool:
        return self.raft.is_leader

    def _node_by_raft_id(self) -> dict[int, Node]:
        return {n.raft_id: n for n in self.store.view().nodes() if n.raft_id}

    def leader_node_id(self) -> str | None:
        lid = self.raft.leader_id
        if not lid:
            return None
        node = self._node_by_raft_id().get(lid)
        return node.id if node else None

    def raft_members(self) -> list[RaftMember]:
        by_raft = self._node_by_raft_id()
        leader = self.raft.leader_id
        out = []
        for m in self.raft.members():
            node = by_raft.get(m.node_id)
            out.append(
                RaftMember(
                    raft_id=m.node_id,
                    node_id=node.id if node else "",
                    addr=m.addr or (self.advertise_addr if m.node_id == self.raft_id else ""),
                    voter=m.voter,
                    reachable=m.node_id == self.raft_id
                    or (m.reachable and leader != 0 and not _down(node)),
                    leader=m.node_id == leader,
                )
            )
        return out

    def last_contact(self, node_id: str) -> float | None:
        """Seconds since this manager's Raft member last heard from the Raft member of
        ``node_id``; None when that node is not a Raft member (a worker) or Raft is not
        running. See RaftNode.last_contact."""
        if node_id == self._node_id:
            return 0.0
        node = self.store.view().get_node(node_id)
        raft_id = getattr(node, "raft_id", 0) if node is not None else 0
        if not raft_id or raft_id not in self.raft.peers:
            return None
        return self.raft.last_contact(raft_id)

    async def transfer_leadership(self, to: str | None = None, timeout: float = 10.0) -> str:
        """Hand Raft leadership to the manager node ``to`` (None: the most caught-up other
        voter) and return the new leader's node id once it leads. Any manager may be asked: a
        follower forwards the request to the leader over the cluster port. Raises ValueError
        for a target that cannot lead (not a manager, not a voter, unreachable, itself when
        there is no other), NoQuorum when no leader is known or the transfer did not finish."""
        if not self.raft.is_leader:
            addr = self.raft.leader_addr()
            if addr is None:
                raise NoQuorum("no leader to transfer leadership from (election under way?)")
            host, _, port = addr.rpartition(":")
            client = RpcClient(host, int(port), ssl=self._client_ssl, timeout=timeout + 2,
                               server_hostname="swarm-manager" if self._client_ssl else None)
            try:
                if self._client_ssl is not None:  # the leader's certificate, not just the CA's
                    conn = await client.connect()
                    cluster = self.store.view().cluster()
                    require_manager_cert(conn.peer.cert, cluster_id=cluster.id if cluster else None)
                answer = await client.call(RAFT_TRANSFER, {"to": to, "timeout": timeout})
            except PermissionDeniedError as e:
                raise NoQuorum(f"the leader at {addr} is not a manager of this cluster: {e}") from None
            except RpcError as e:
                if e.code == INVALID_ARGUMENT:
                    raise ValueError(e.message) from None
                raise NoQuorum(f"leadership transfer through the leader at {addr} failed: {e}") from None
            finally:
                await client.close()
            return answer["leader"]
        raft_id = 0
        if to is not None:
            if to == self._node_id:
                return to  # already leads
            member = next((m for m in self.raft_members() if m.node_id == to), None)
            if member is None or not member.voter:
                raise ValueError(f"node {to} is not a voting manager: only a manager can lead")
            if not member.reachable:
                raise ValueError(f"manager {to} is not reachable: it cannot take over leadership")
            raft_id = member.raft_id
        new = await self.raft.transfer_leadership(raft_id, timeout=timeout)
        node = self._node_by_raft_id().get(new)
        return node.id if node else str(new)

    async def _handle_transfer(self, peer: PeerInfo, params) -> dict:
        if not self.revocation.is_current_manager(peer):
            raise RpcError(PERMISSION_DENIED, "only managers may move leadership")
        params = params if isinstance(params, dict) else {}
        to, timeout = params.get("to"), params.get("timeout", 10.0)
        if (to is not None and not isinstance(to, str)) or not isinstance(timeout, (int, float)):
            raise RpcError(INVALID_ARGUMENT, "to must be a node id or null, timeout a number")
        if not self.raft.is_leader:
            raise RpcError(NOT_LEADER, "this manager no longer leads; ask again")
        try:
            return {"leader": await self.transfer_leadership(to, float(min(timeout, 60.0)))}
        except ValueError as e:
            raise RpcError(INVALID_ARGUMENT, str(e)) from None
        except (NotLeader, RaftError) as e:
            raise RpcError(UNAVAILABLE, f"leadership transfer failed: {e}") from None

    async def read_barrier(self) -> None:
        await self.raft.read_index()

    def raft_settings(self) -> dict[str, int]:
        """What this member runs with, as Docker's Spec.Raft (ticks, not seconds: a tick here
        is `tick_ms`, 50 ms by default, where Swarm's is 1 s)."""
        cfg = self.raft.cfg
        return {
            "SnapshotInterval": cfg.snapshot_interval,
            "KeepOldSnapshots": KEEP - 1,
            "LogEntriesForSlowFollowers": cfg.keep_entries,
            "ElectionTick": cfg.election_ticks,
            "HeartbeatTick": cfg.heartbeat_ticks,
        }

    # ---------------------------------------------------------------- life cycle
    def add_leader_loop(self, name: str, start: LoopFn, stop: LoopFn) -> None:
        """Register a control loop that runs only while this manager leads."""
        self._leader_loops.append((name, start, stop))

    async def start(self, *, bootstrap: bool = False, peers: dict[int, str] | None = None) -> None:
        await self.raft.start(bootstrap=bootstrap, peers=peers)
        self._leadership_task = asyncio.create_task(self._leadership(), name="manager-leadership")
        self.kek_watcher.start()
        await self.revocation.start()

    async def stop(self) -> None:
        await self.revocation.stop()
        await self.kek_watcher.stop()
        if self._leadership_task:
            self._leadership_task.cancel()
            try:
                await self._leadership_task
            except (asyncio.CancelledError, Exception):
                pass
        await self._stop_loops()
        await self.raft.stop()

    def add_leader_listener(self, listener: Callable[[int, int], None]) -> None:
        """``listener(leader_raft_id, term)`` on every leader change seen by this member, in
        any role (the dispatcher tells watching workers where the new leader is)."""
        self._leader_listeners.append(listener)

    def _on_leader_change(self, leader: int, term: int) -> None:
        self._leader_event.set()
        for listener in self._leader_listeners:
            try:
                listener(leader, term)
            except Exception:
                log.exception("leader change listener failed")

    async def _leadership(self) -> None:
        """Start the leader-only loops on winning an election, stop them on losing it.

        A new leader first waits until its store has applied everything committed before its
        term (its no-op entry applied), so loops never act on a stale view of the cluster.
        """
        while True:
            await self._leader_event.wait()
            self._leader_event.clear()
            if self.raft.is_leader and self._leading and self.raft.term != self._leading_term:
                # Lost and won again before this loop ran (issue 9, hole 7b): the loops still
                # run on the old term's view, and another leader may have committed in
                # between. Stop them and start afresh, behind a new read barrier.
                log.info("manager %s: leadership changed hands and came back (term %d -> %d); "
                         "restarting control loops", self.node_id, self._leading_term, self.raft.term)
                await self._stop_loops()
            if self.raft.is_leader and not self._leading:
                term = self.raft.term
                try:
                    await self.raft.read_index(timeout=5.0)
                except NoQuorum:
                    self._leader_event.set()
                    await asyncio.sleep(0.05)
                    continue
                if not self.raft.is_leader or self.raft.term != term:
                    self._leader_event.set()  # look again at what leadership is now
                    continue
                self._leading = True
                self._leading_term = term
                log.info("manager %s: became leader (term %d); starting control loops", self.node_id, self.raft.term)
                for name, start, _ in self._leader_loops:
                    try:
                        await start()
                    except Exception:
                        log.exception("leader loop %s failed to start", name)
                if not self.raft.is_leader or self.raft.term != term:
                    self._leader_event.set()  # it changed while the loops were starting
            elif not self.raft.is_leader and self._leading:
                log.info("manager %s: lost leadership; stopping control loops", self.node_id)
                await self._stop_loops()

    async def _stop_loops(self) -> None:
        if not self._leading:
            return
        self._leading = False
        for name, _, stop in reversed(self._leader_loops):
            try:
                await stop()
            except Exception:
                log.exception("leader loop %s failed to stop", name)
