"""One manager: a Raft member replicating the store, plus the control plane on top of it.

`Manager` builds its own components (as swarmkit's manager.go does): Raft membership, the
dispatcher, CA server, allocator, scheduler, orchestrators and role manager; the agent only
says where its state lives and how it joins (`found`, `join`, or `start` on a restart).

Every manager serves reads from its own store and forwards writes to the leader (through
Raft's proposal forwarding). Control loops that make decisions — dispatcher, role manager,
orchestrators, scheduler — run only on the leader (leadership.py starts and stops them), and
meet each other only via the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from ..background import Background
from ..ca import require_manager_cert
from ..ca.keyfile import NodeCredentials
from ..proto import INVALID_ARGUMENT, NOT_LEADER, PERMISSION_DENIED, RAFT_TRANSFER, UNAVAILABLE
from ..raft.config import RaftConfig
from ..raft.errors import NoQuorum, NotLeader, RaftError
from ..raft.node import RaftNode
from ..raft.readlane import ReadLane
from ..raft.storage import DiskStorage
from ..raft.storage.snapshots import KEEP
from ..raft.transport import Transport
from ..rpc import PeerInfo, RpcClient, RpcError, RpcServer
from ..store import MemoryStore, Node, NodeState, Transaction
from ..store.follow import StoreFollower
from .allocator import Allocator
from .autolock import KEKWatcher
from .caserver import CAServer
from .context import RaftMember
from .dispatcher import DEFAULT_MAX_HEARTBEAT_RATE, ClusterDirectory, Dispatcher, cert_identity
from .leadership import LeaderLoops, Loop
from .logbroker import LogBroker
from .logreader import LogReader
from .orchestrator import orchestration_loops
from .proposer import RaftProposer
from .raftjoin import RaftMembership, RemovalWatch, fetch_members, request_join
from .revocation import Revocation
from .rolemanager import RoleManager
from .scheduler import SchedulerLoop

log = logging.getLogger("swarmkit_py.manager")




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
        node_credentials: NodeCredentials | None = None,
        cluster_id: str | None = None,
        heartbeat_period: float = 1.0,
        max_heartbeat_rate: float | None = DEFAULT_MAX_HEARTBEAT_RATE,
    ):
        """Opens the Raft state encrypted (migrating a plaintext one): raises raft.storage's
        SwarmLockedError when it is auto-locked and no `unlock_key` is given, and
        InvalidUnlockKeyError when the key is wrong. `node_credentials`: the node's key, sealed
        and unsealed with auto-lock (autolock.KEKWatcher). `ca_key_path`: where the CA signing key is
        exported for `client-cert` while auto-lock is off (see autolock.KEKWatcher).
        `cluster_id` is the swarm this manager belongs to (the dispatcher and the join calls
        refuse certificates of any other); `heartbeat_period` is the one the dispatcher asks
        workers for, at most ``max_heartbeat_rate`` heartbeats a second (the dispatcher
        lengthens the period as the cluster grows)."""
        self._raft_nodes: tuple[int, dict[int, Node]] | None = None
        self.cluster_id = cluster_id
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
        # Fresh = no log and no snapshot yet (the lock and key files alone hold no state).
        self.fresh = not any(raft_dir.glob("wal-*.log")) and not any(raft_dir.glob("snap-*.snap"))
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
        self.kek_watcher = KEKWatcher(self.store, storage, ca_key_path, node_credentials)
        self._raft_spec = Background("raft-spec", self._follow_raft_spec)
        self._client_ssl = client_ssl
        rpc_server.add_handler(RAFT_TRANSFER, self._handle_transfer)
        self.leader_loops = LeaderLoops(self.raft, f"manager {node_id}")
        self._leader_listeners: list[Callable[[int, int], None]] = []
        self.raft.on_leader_change = self._on_leader_change
        # The raft loop died (a full disk): leadership is already gone (the leader-change
        # callback stopped the leader loops); the owner decides how to bring the member back.
        self.on_raft_failure: Callable[[BaseException], None] | None = None
        self.raft.on_fatal = lambda exc: self.on_raft_failure(exc) if self.on_raft_failure else None
        # The Raft member was removed from the group without learning it (raftjoin.py): the
        # owner checks the node's role and joins again as a new member if it is still a manager.
        self.on_removed: Callable[[], None] | None = None
        self.removal_watch = RemovalWatch(self, client_ssl,
                                          lambda: self.on_removed() if self.on_removed else None)
        self._build_control_plane(cluster_id, heartbeat_period, max_heartbeat_rate)

    def _build_control_plane(self, cluster_id: str | None, heartbeat_period: float,
                             max_heartbeat_rate: float | None) -> None:
        """Every manager registers the RPC handlers (a follower answers with a pointer to the
        leader); the decisions are leader loops. Registration order is start order: the
        dispatcher first, so a new leader's grace period for the nodes begins at once."""
        self.membership = RaftMembership(self)
        self.dispatcher = Dispatcher(
            self.proposer,
            heartbeat_period=heartbeat_period,
            max_heartbeat_rate=max_heartbeat_rate,
            identify=cert_identity(cluster_id),
            directory=ClusterDirectory(self),
            backlog=self.rpc.handshake_backlog,
        )
        self.dispatcher.register(self.rpc)
        self.add_leader_loop("dispatcher", self.dispatcher)
        self.logbroker = LogBroker(self.dispatcher, authorize=self.revocation.is_current_manager)
        self.logbroker.register(self.rpc)
        self.logs = LogReader(self.logbroker, self)
        self.leader_loops.add_task("allocator", Allocator(self.proposer).run)
        self.add_leader_loop("scheduler", SchedulerLoop(self.proposer))
        for name, loop in orchestration_loops(self.proposer):
            self.add_leader_loop(f"orchestrator-{name}", loop)
        self.ca = CAServer(self.proposer)
        self.ca.register(self.rpc)
        self.roles = RoleManager(self)
        self.add_leader_loop("roles", self.roles)
        self.leader_loops.add_task("ca-role-watch", self.ca.watch_role_changes)
        self.dispatcher.add_session_listener(self.ca.session_opened)

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
        """Cached until a node changes: every heartbeat answer lists the managers, and
        scanning every node for each one made a heartbeat O(nodes) (issue 13's profile, 1,000
        nodes); keyed by the applied index it was still rebuilt after every task write of a
        fill (1.7 % of the leader's CPU)."""
        view = self.store.view()
        changed = view.changed_at("node")
        cached = self._raft_nodes
        if cached is not None and cached[0] == changed:
            return cached[1]
        by_raft = {n.raft_id: n for n in view.nodes() if n.raft_id}
        self._raft_nodes = (changed, by_raft)
        return by_raft

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

    def host_silent(self, node_id: str) -> bool:
        """The host of manager ``node_id`` has acknowledged nothing our Raft member sent it
        for a while, with data in flight (RaftNode.host_silent: kernel evidence that it is
        down or cut off); False for workers and when there is no telling."""
        if node_id == self._node_id:
            return False
        node = self.store.view().get_node(node_id)
        raft_id = getattr(node, "raft_id", 0) if node is not None else 0
        return bool(raft_id and raft_id in self.raft.peers and self.raft.host_silent(raft_id))

    def leader_client(self, timeout: float) -> tuple[str, RpcClient]:
        """(the leader's address, an RpcClient for its cluster port) for a request only the
        leader serves. The client accepts only a manager's certificate of this cluster, and the
        leader's own node's when the store knows it. Raises NoQuorum when no leader is known."""
        addr = self.raft.leader_addr()
        if addr is None:
            raise NoQuorum("no leader known (election under way?)")
        host, _, port = addr.rpartition(":")
        verify = None
        if self._client_ssl is not None:
            cluster = self.store.view().cluster()
            cluster_id, node_id = (cluster.id if cluster else None), self.leader_node_id()

            def verify(peer: PeerInfo) -> None:
                require_manager_cert(peer.cert, node_id=node_id, cluster_id=cluster_id)

        return addr, RpcClient(host, int(port), ssl=self._client_ssl, timeout=timeout,
                               server_hostname="swarm-manager" if self._client_ssl else None,
                               verify_peer=verify)

    async def transfer_leadership(self, to: str | None = None, timeout: float = 10.0) -> str:
        """Hand Raft leadership to the manager node ``to`` (None: the most caught-up other
        voter) and return the new leader's node id once it leads. Any manager may be asked: a
        follower forwards the request to the leader over the cluster port. Raises ValueError
        for a target that cannot lead (not a manager, not a voter, unreachable, itself when
        there is no other), NoQuorum when no leader is known or the transfer did not finish."""
        if not self.raft.is_leader:
            addr, client = self.leader_client(timeout + 2)
            try:
                answer = await client.call(RAFT_TRANSFER, {"to": to, "timeout": timeout})
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

    async def read_barrier(self, timeout: float | None = None) -> None:
        await self.raft.read_index(timeout)

    def lone_read_index(self) -> int | None:
        """`RaftNode.lone_read_index`: safe to call from the API's front thread."""
        return self.raft.lone_read_index()

    def raft_applied_index(self) -> int:
        """`RaftNode.applied_index`: safe to call from the API's front thread."""
        return self.raft.applied_index

    def read_lane(self) -> ReadLane:
        """A read lane (raft/readlane.py) for the caller's event loop: the API's front thread
        confirms its reads without this manager's loop. Dialled members' certificates are
        checked under the store's commit lock (the check reads the store)."""
        return ReadLane(self.raft, guard=self.store.commit_lock)

    def read_index_threadsafe(self):
        """`RaftNode.read_index_threadsafe`, for the API's front thread."""
        return self.raft.read_index_threadsafe()

    def forget_read(self, read) -> None:
        self.raft.forget_read(read)

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

    async def _follow_raft_spec(self) -> None:
        follower = StoreFollower(self.store, "cluster", name="applying the swarm's Raft settings")
        await follower.repeat(self._apply_raft_spec, every=5.0)

    def _apply_raft_spec(self) -> None:
        """The swarm-wide Raft settings of the cluster spec (snapshot interval, entries kept
        for slow followers: `docker swarm update`), applied to this member whatever its role,
        as swarmkit's managers do when the cluster object changes."""
        cluster = self.store.view().cluster()
        raft = cluster.spec.raft if cluster is not None else None
        if raft is None:
            return
        want = {"snapshot_interval": raft.snapshot_interval,
                "keep_entries": raft.log_entries_for_slow_followers}
        want = {k: v for k, v in want.items() if v is not None and getattr(self.raft.cfg, k) != v}
        if want:
            self.raft.cfg = self.raft.cfg.model_copy(update=want)
            log.info("raft settings from the swarm spec: %s", want)

    # ---------------------------------------------------------------- life cycle
    def add_leader_loop(self, name: str, loop: Loop) -> None:
        """Register a control loop (`start()`, `async stop()`) that runs only while this
        manager leads."""
        self.leader_loops.add(name, loop)

    async def found(self, initial: Transaction, timeout: float = 30.0) -> None:
        """Start as the only member of a new swarm and write its first state (`initial`, see
        bootstrap.py) once leading; nothing is written if a cluster object exists already."""
        await self.start(bootstrap=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.raft.is_leader:
            if loop.time() > deadline:
                raise SystemExit("the founding manager did not become leader of its own cluster")
            await asyncio.sleep(0.02)
        if self.store.view().cluster() is None:
            await self.proposer.propose(initial)

    async def join(self, managers: list[str], client_ssl) -> None:
        """Start with a fresh log as a new member: learn the members from `managers`, then ask
        the leader to add us (the log arrives by replication)."""
        others = [a for a in managers if a != self.advertise_addr]
        peers = await fetch_members(others, client_ssl, self.cluster_id)
        await self.start(peers=peers)
        await request_join(others, client_ssl, self.raft_id, self.advertise_addr, cluster_id=self.cluster_id)

    async def start(self, *, bootstrap: bool = False, peers: dict[int, str] | None = None) -> None:
        await self.raft.start(bootstrap=bootstrap, peers=peers)
        self.leader_loops.start()
        self.kek_watcher.start()
        self._raft_spec.start()
        self.revocation.start()
        self.removal_watch.start()

    async def stop(self) -> None:
        await self.removal_watch.stop()
        await self.revocation.stop()
        await self.kek_watcher.stop()
        await self._raft_spec.stop()
        await self.leader_loops.stop()
        await self.raft.stop()

    def add_leader_listener(self, listener: Callable[[int, int], None]) -> None:
        """``listener(leader_raft_id, term)`` on every leader change seen by this member, in
        any role (the dispatcher tells watching workers where the new leader is)."""
        self._leader_listeners.append(listener)

    def _on_leader_change(self, leader: int, term: int) -> None:
        self.leader_loops.leader_changed()
        for listener in self._leader_listeners:
            try:
                listener(leader, term)
            except Exception:
                log.exception("leader change listener failed")
