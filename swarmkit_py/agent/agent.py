"""The agent process: one per host, always a worker, a manager when its role says so.

It owns the cluster port (2377, TLS with optional client certificates so joining nodes can
reach the CA), and on managers the Docker-compatible API (TCP 2376 with client certificates,
plus a root-only unix socket). Role changes arrive through the store (managers) or the
dispatcher session (workers); the agent reacts by starting or stopping its manager half.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import os
import shutil
import socket
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..background import Background
from ..ca.errors import CAError
from ..ca.identity import CertRole, expect_manager, identity_from_cert
from ..ca.keyfile import NodeCredentials, load_api_credentials, remove_api_credentials
from ..ca.optional_tls import server_context_optional_client
from ..ca.tls import client_context, server_context
from ..loopwatch import LoopWatch
from ..manager.admission import cluster_port_policy
from ..memory import trim_heap
from ..proto import CA_RENEW_NOW, NETMAP
from ..rpc import RpcServer
from ..worker.certs import CertRenewer, RenewError
from ..worker.describe import describe_node
from ..worker.executor import DockerExecutor, connect
from ..worker.logs import LogPublisher, session_sender
from ..worker.network import NetworkPlane
from ..worker.reconcile import TaskWorker
from ..worker.session import WorkerSession
from .config import AgentConfig
from .gcpolicy import GCPolicy
from .identity import new_raft_id
from .state import JOINING_AS, ROOT_CA_CERT, ROOT_CA_KEY, LocalNode, certs_dir, role_hint

if TYPE_CHECKING:
    from ..manager.manager import Manager

# The manager half (Manager, the Docker API, aiohttp) is imported where a manager starts, not
# here: a worker-only agent never needs it, and it is about 15 MB of RSS (bench/agent_rss.py).
# Likewise the Raft storage (its keyring needs `cryptography`, ca/sslfacts.py says why a worker
# does without it) is imported by the methods of a manager or of a sealed node key.

log = logging.getLogger("swarmkit_py.agent")


def _role_name(result) -> str:
    """A renewal's role as the node state names it ("manager" / "worker")."""
    return str(getattr(result.role, "value", result.role))


STATE_POLL_S = 0.1
"""How often an agent not yet in a swarm looks for the state `init`/`join` write."""


class Agent:
    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self.state_dir = Path(cfg.state_dir)
        self.hostname = cfg.hostname or socket.gethostname()
        self.state: LocalNode | None = None
        self.rpc: RpcServer | None = None
        self.manager: Manager | None = None
        self._api_runners: list = []
        self._stop = asyncio.Event()
        self._jobs: list[Background] = []
        """The agent's own background jobs (certificate renewal, CA key export)."""
        self._restarter: Background | None = None
        self.failure: BaseException | None = None
        """Why the agent stopped itself (a job died of something a restart cannot fix)."""
        self.session: WorkerSession | None = None
        self._metrics_runner = None
        self.renewer: CertRenewer | None = None
        self.task_worker: TaskWorker | None = None
        self.log_publisher: LogPublisher | None = None
        self._unlock_key: bytes | None = None  # the auto-lock key, in memory only
        self.credentials = NodeCredentials(certs_dir(self.state_dir))
        """The node's certificate and key; the key sealed by auto-lock on managers."""
        self.cluster_refused: Counter = Counter()
        """What port 2377 turned away, by reason (kept across RpcServer restarts)."""
        self.api_refused: Counter = Counter()
        """What the Docker API's authorization refused, by reason."""
        self.api_latency = None
        """The Docker API's request times (its app's histogram), once the API is served."""
        self.api_read_wait = None
        """How long the API's reads waited for their barrier (the front's histogram)."""
        self.api_read_lane = None
        """The front's read lane counts (`FrontControl.lane_counts`), once the API is served."""
        self.loopwatch = LoopWatch(report_after=cfg.loop_stall_warn_s)
        """How long the event loop is held, and where (logged past `loop_stall_warn_s`)."""
        self.gc_policy = GCPolicy() if cfg.gc_policy == "tuned" else None
        self._manager_half: asyncio.Future | None = None
        """The manager half's import (`_import_manager_half`) in a thread, once started."""

    # ---------------------------------------------------------------- TLS material
    def _creds(self) -> tuple[bytes, bytes, bytes]:
        """The node's certificate, key (unsealed in memory if auto-lock seals it) and CA."""
        cert, key = self.credentials.load()
        ca = (certs_dir(self.state_dir) / ROOT_CA_CERT).read_bytes()
        return cert, key, ca

    def _api_tls(self):
        """The Docker API's TCP context: the node's key pair, or while auto-lock seals that
        key, the API's own (ca/keyfile.py); None if neither can be used (then only the unix
        socket is served)."""
        cdir = certs_dir(self.state_dir)
        ca = (cdir / ROOT_CA_CERT).read_bytes()
        if self.credentials.sealed:
            pair = load_api_credentials(cdir)
            if pair is not None:
                return server_context(pair[0], pair[1], ca)
            if not self.credentials.unlocked:
                return None
        cert, key = self.credentials.load()
        return server_context(cert, key, ca)

    def server_ssl(self):
        cert, key, ca = self._creds()
        return server_context_optional_client(cert, key, ca)

    def client_ssl(self):
        cert, key, ca = self._creds()
        # Every server we dial must be a manager: the SAN check here, the subject's role (and
        # cluster, node id) by the verify_peer of each client (issue 9, hole 2).
        return client_context(ca, cert, key)

    def _admit(self, peer):
        """Removed nodes are refused on the cluster port (managers know; workers hold no store)."""
        return self.manager.revocation.admit(peer) if self.manager is not None else None

    def _api_authorize(self, request) -> None:
        """Who may use the Docker API: on TCP, a client bundle (`client-cert`) or the certificate
        of a node that is a manager *now* — never a worker's, a removed node's or a demoted
        manager's (issue 9, hole 5). The unix socket has no certificate and is protected by its
        file mode (root only). Refusals are counted by reason for /metrics."""
        ident = api_identity(request)
        if ident is None:
            return
        verdict = None
        if ident.role not in (CertRole.CLIENT, CertRole.MANAGER):
            verdict = "not_manager", (
                f"node {ident.node_id} has role {ident.role}: worker certificates can't be used to view or modify "
                "cluster state; use a client bundle (swarmkit-py client-cert) or a manager"
            )
        elif self.manager is not None:
            verdict = self.manager.revocation.api_verdict(ident)
        if verdict is not None:
            self.api_refused[verdict[0]] += 1
            raise PermissionError(verdict[1])

    @property
    def advertise_addr(self) -> str:
        if self.cfg.advertise_addr:
            return self.cfg.advertise_addr
        host, _, port = self.cfg.listen_addr.rpartition(":")
        if host in ("0.0.0.0", "", "::"):
            raise SystemExit("advertise_addr must be set when listen_addr is a wildcard address")
        return self.cfg.listen_addr

    # ---------------------------------------------------------------- life cycle
    async def run(self) -> None:
        self.loopwatch.start()
        if self.gc_policy is not None:
            self.gc_policy.start()
        try:
            await self.start()
            await self._stop.wait()
            await self.shutdown()
        finally:
            self.loopwatch.stop()
            if self.gc_policy is not None:
                self.gc_policy.stop()
        if self._metrics_runner is not None:
            self._metrics_runner.close()
            await self._metrics_runner.wait_closed()

    def request_stop(self) -> None:
        self._stop.set()

    def _fatal(self, name: str, exc: BaseException) -> None:
        """A job died of something restarting it cannot fix: stop the agent (non-zero exit)."""
        log.critical("stopping the agent: %s failed: %s", name, exc)
        self.failure = exc
        self.request_stop()

    async def _wait_for_state(self) -> LocalNode:
        said = False
        while True:
            st = LocalNode.load(self.state_dir)
            if st is not None:
                return st
            if await self._serve_request():
                continue
            if self._manager_half is None and role_hint(self.state_dir) == "manager":
                log.info("a join as a manager is under way: loading the manager half meanwhile")
                self._load_manager_half()
            if not said:
                log.warning("not part of a swarm yet (no %s): waiting for `swarmkit-py init` or `join`", LocalNode.path(self.state_dir))
                said = True
            # a stat every 0.1 s costs nothing; the wait after `init`/`join` is on the path of
            # every bootstrap (the first manager's API, then each joined node's start)
            await asyncio.sleep(STATE_POLL_S)

    async def _serve_request(self) -> bool:
        """An `init` or `join` the deploy toolkit handed this agent (agent/enroll.py), run
        here as its command would run, and answered; False if there was none."""
        from . import enroll

        try:
            req = enroll.take_request(self.state_dir)
        except enroll.BadRequest as e:
            log.warning("refused a request in %s: %s", self.state_dir, e)
            enroll.answer(self.state_dir, 2, "", f"the agent refused the request: {e}\n", e.req_id)
            return True
        if req is None:
            return False
        log.info("running a request to %s (%s)", req["op"], enroll.request_role(req) or "role not said")
        out, err = io.StringIO(), io.StringIO()
        if self._manager_half is not None:  # started by a hint: never two import threads at once
            await self._manager_half
        try:
            rc = await enroll.serve(self.cfg, req, out, err, self._load_manager_half)
        except SystemExit as e:  # init_state's refusals, as the command prints them
            print(e, file=err)
            rc = 1
        except Exception as e:  # noqa: BLE001 - answered, as the command would have failed
            log.exception("the request to %s failed", req["op"])
            print(f"{req['op']}: {type(e).__name__}: {e}", file=err)
            rc = 1
        enroll.answer(self.state_dir, rc, out.getvalue(), err.getvalue(), req.get("id") or "")
        # a hint the deploy toolkit left for this request (Cluster.expect_manager) has served
        (self.state_dir / JOINING_AS).unlink(missing_ok=True)
        log.info("the request to %s ended with status %d %s", req["op"], rc, err.getvalue().strip())
        return True

    def _load_manager_half(self) -> asyncio.Future:
        if self._manager_half is None:
            self._manager_half = asyncio.ensure_future(asyncio.to_thread(_import_manager_half))
        return self._manager_half

    async def start(self) -> None:
        self.state = await self._wait_for_state()
        if self.state.role == "manager" or self._manager_half is not None:
            # The manager half is imported in a thread (on the event loop it held the loop
            # 1.5 s on the way to Reachable, Raft catch-up and the session waiting behind it),
            # all of it before the loop imports anything else: two threads never import the
            # same modules at once, so an import-lock deadlock (ImportError) cannot happen.
            await self._load_manager_half()
        raft_dir = self.state_dir / "raft"
        locked = (self.state.role == "manager" or self.credentials.sealed) and _keyring().is_locked(raft_dir)
        if locked and self._unlock_key is None:
            if not await self._serve_locked():
                return  # asked to stop while still locked
        if self.credentials.sealed and not self.credentials.unlocked:
            await asyncio.to_thread(self._open_node_key, raft_dir)
        host, _, port = self.cfg.listen_addr.rpartition(":")
        self.rpc = RpcServer(host, int(port), ssl=self.server_ssl(), policy=cluster_port_policy(admit=self._admit),
                             refused=self.cluster_refused)
        await self.rpc.start()
        if self.state.role == "manager":
            await self.start_manager()
        self.start_worker()
        if self.cfg.metrics_listen and self._metrics_runner is None:
            from .metrics import serve_metrics

            mhost, _, mport = self.cfg.metrics_listen.rpartition(":")
            self._metrics_runner = await serve_metrics(self, mhost.strip("[]"), int(mport))
        log.info("agent %s (%s) up as %s on %s", self.state.node_id, self.hostname, self.state.role, self.cfg.listen_addr)
        # what start-up allocated and freed (imports, TLS contexts, the engine's first answers),
        # back to the system once the first exchanges are done (swarmkit_py/memory.py)
        asyncio.get_running_loop().call_later(STARTUP_TRIM_S, trim_heap)

    def _open_node_key(self, raft_dir: Path) -> None:
        """The node key is sealed (auto-lock): its password is in the Raft keyring, open now
        (unlocked, or wrapped by the local key file after auto-lock went off and a crash came
        before the key was re-written in clear). A node that is no longer a manager (demoted
        while a crash interrupted the clean-up) gets its key in clear and loses the keyring."""
        from ..raft.storage.crypto import DEKS_FILE, Keyring

        if not (raft_dir / DEKS_FILE).exists():
            raise SystemExit(
                f"{self.credentials.key_path} is sealed by auto-lock but {raft_dir / DEKS_FILE}, which holds "
                "its password, is missing: this node cannot prove who it is; run `swarmkit-py leave --force` "
                "and join it again"
            )
        password = Keyring.open(raft_dir, self._unlock_key).node_key_password()
        if password is None:
            raise SystemExit(f"{self.credentials.key_path} is sealed but {raft_dir / DEKS_FILE} holds no password for it")
        self.credentials.unlock(password)
        if self.state.role != "manager":
            self._drop_manager_keys(raft_dir)

    def _drop_manager_keys(self, raft_dir: Path) -> None:
        """A node that stops being a manager: its key in clear again (auto-lock concerns
        managers only), no API key pair, no Raft state."""
        if self.credentials.sealed:
            self.credentials.seal(None)
        remove_api_credentials(certs_dir(self.state_dir))
        if raft_dir.exists():
            shutil.rmtree(raft_dir)

    async def _serve_locked(self) -> bool:
        """Auto-lock: the Raft state cannot be read without the operator's key, so serve only
        the unlock call (api/locked.py) until a key opens it, then carry on starting. Nothing
        else runs meanwhile: no Raft, no cluster port, no worker session (as a locked dockerd).
        Returns False if the agent was asked to stop first."""
        from ..raft.storage import (
            SWARM_LOCKED_MESSAGE,
            InvalidUnlockKeyError,
            Keyring,
            parse_unlock_key,
        )

        raft_dir = self.state_dir / "raft"
        log.warning("%s (this manager restarted with auto-lock on; its Raft state is sealed)", SWARM_LOCKED_MESSAGE)
        unlocked = asyncio.Event()

        async def unlock(text: str) -> None:
            key = parse_unlock_key(text)
            try:
                await asyncio.to_thread(Keyring.open, raft_dir, key)
            except InvalidUnlockKeyError:
                log.warning("unlock refused: the key given does not open this manager's Raft state")
                raise
            self._unlock_key = key
            unlocked.set()
            log.info("unlocked: starting the manager")

        from ..api.locked import make_locked_app

        app = make_locked_app(
            unlock,
            node_id=self.state.node_id,
            node_addr=self.advertise_addr.rpartition(":")[0],
            engine_version=__version__,
            hostname=self.hostname,
            authorize=self._api_authorize,
        )
        runners = await self._serve_api(app)
        try:
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(unlocked.wait()), asyncio.ensure_future(self._stop.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )
            for t in pending:
                t.cancel()
        finally:
            for r in runners:
                await r.cleanup()
        return unlocked.is_set()

    async def shutdown(self) -> None:
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            await job.stop()
        if self.task_worker is not None:
            await self.task_worker.stop()  # leaves containers running: a restart adopts them
            if self.log_publisher is not None:
                await self.log_publisher.stop()
            if getattr(self, "network_plane", None) is not None:
                await self.network_plane.stop()
            self.task_worker = None
        if self.session is not None:
            await self.session.stop()
            self.session = None
        await self.stop_manager()
        if self.rpc:
            await self.rpc.stop()
            self.rpc = None

    # ---------------------------------------------------------------- worker half
    def start_worker(self) -> None:
        """Every node, managers included, keeps a session with the leader's dispatcher: that
        is what makes it Ready, and how role changes and (later) task assignments reach it."""
        st = self.state
        docker_host = self.cfg.docker_host
        self.session = WorkerSession(
            st.node_id,
            list(st.managers),
            ssl_context=self.client_ssl(),
            verify_peer=expect_manager(st.cluster_id),
            describe=lambda: describe_node(docker_host, hostname=self.hostname),
            addr=self.advertise_addr.rpartition(":")[0],
            # a manager's own member is the standby that survives any other host's crash
            standby=self.advertise_addr if st.role == "manager" else None,
        )
        self.renewer = CertRenewer(
            certs_dir(self.state_dir), lambda: list(self.session.managers), on_renewed=self._on_renewed,
            credentials=self.credentials,
        )
        self.session.on_push(CA_RENEW_NOW, lambda params: self.renewer.request_renewal("manager asked"))
        self.session.add_session_listener(self._remember_managers)
        self.network_plane = NetworkPlane(
            st.node_id, self.advertise_addr.rpartition(":")[0],
            _client_once(docker_host), kernel=self.cfg.overlay_dataplane)
        self.session.on_push(NETMAP, self.network_plane.on_netmap)
        executor = DockerExecutor(self.cfg.docker_host, networks=self.network_plane)
        self.task_worker = TaskWorker(self.session, executor)
        self.log_publisher = LogPublisher(self.session, executor.client,
                                          session_sender(self.session))
        self.session.start()
        self.task_worker.start()
        self.network_plane.start()
        self._spawn("cert-renewer", self.renewer.run)

    def _spawn(self, name: str, fn) -> None:
        """A job of this agent run; one that dies stops the agent (see `_fatal`)."""
        job = Background(name, fn, on_death=self._fatal)
        self._jobs.append(job)
        job.start()

    def _remember_managers(self, answer) -> None:
        addrs = [m["addr"] for m in (answer or {}).get("managers", []) if m.get("addr")]
        if addrs and addrs != self.state.managers:
            self.state.managers = addrs
            self.state.save(self.state_dir)

    async def _on_renewed(self, result) -> None:
        """A renewed certificate with a different role is a promotion or a demotion: restart
        this agent's components with the new identity (a manager half appears or goes)."""
        role = _role_name(result)
        if role == self.state.role:
            return
        log.info("role changed: %s -> %s; restarting components", self.state.role, role)
        self.state.role = role
        if role == "manager":
            self.state.raft_id = new_raft_id()
        else:
            self.state.raft_id = 0
        self.state.save(self.state_dir)
        # Not awaited here: the restart stops the renewer, which is what called us.
        demoted = role != "manager"
        self._restarter = Background("agent-restart", lambda: self._restart(demoted), on_death=self._fatal)
        self._restarter.start()

    async def _restart(self, demoted: bool) -> None:
        if not demoted:
            # A promoted worker loads the manager half now (a worker never did). In a thread,
            # while its session still runs: imported on the event loop it held the loop 1-2 s
            # on a loaded machine, long enough for the leader to declare the node down.
            await self._load_manager_half()
        await self.shutdown()
        if demoted:
            await asyncio.to_thread(self._drop_manager_keys, self.state_dir / "raft")
        await self.start()

    # ---------------------------------------------------------------- manager half
    async def start_manager(self) -> None:
        from ..manager.manager import Manager
        from ..store.objects.base import build_all

        build_all()  # a manager validates every kind of object (done already if promoted)
        st = self.state
        mgr = Manager(
            node_id=st.node_id,
            raft_id=st.raft_id,
            state_dir=self.state_dir,
            advertise_addr=self.advertise_addr,
            rpc_server=self.rpc,
            client_ssl=self.client_ssl(),
            raft_config=self.cfg.raft,
            unlock_key=self._unlock_key,
            ca_key_path=certs_dir(self.state_dir) / ROOT_CA_KEY,
            node_credentials=self.credentials,
            cluster_id=st.cluster_id,
            heartbeat_period=self.cfg.heartbeat_period_s,
            max_heartbeat_rate=self.cfg.max_heartbeats_per_s,
        )
        self.manager = mgr
        mgr.on_raft_failure = self._on_raft_failure
        mgr.on_removed = self._on_raft_removed
        if st.bootstrap and mgr.fresh:
            await mgr.found(self._initial_transaction())
            st.bootstrap = False
            st.save(self.state_dir)
            log.info("founded swarm %s as node %s", st.cluster_id, st.node_id)
        elif mgr.fresh:
            await mgr.join(st.managers, self.client_ssl())
        else:
            await mgr.start()
        await self._start_api(mgr)

    def _on_raft_removed(self) -> None:
        """This manager's Raft member was removed from the group and never learnt it (demoted,
        then promoted again before its certificate changed: raftjoin.RemovalWatch). Renew the
        certificate: a worker's means a demotion, which `_on_renewed` carries out; a manager's
        means the node is still a manager, so it joins again as a new member, its old Raft
        state dropped (swarmkit's node wipes it on ErrMemberRemoved the same way)."""
        if self._restarter is not None and self._restarter.running:
            return

        async def rejoin() -> None:
            while True:
                try:
                    result = await self.renewer.renew_once()
                    break
                except (RenewError, CAError, OSError) as e:
                    log.warning("raft member removed: renewing the certificate to learn this "
                                "node's role failed (%s); retrying", e)
                    await asyncio.sleep(2.0)
            if _role_name(result) != "manager":
                return  # a demotion: _on_renewed restarts this agent as a worker
            log.warning("joining the managers' Raft group again as a new member (raft member %d "
                        "was removed)", self.state.raft_id)
            self.state.raft_id = new_raft_id()
            self.state.save(self.state_dir)
            await self._restart(demoted=True)  # drops the old Raft state; the role stays

        self._restarter = Background("agent-rejoin", rejoin, on_death=self._fatal)
        self._restarter.start()

    def _on_raft_failure(self, exc: BaseException) -> None:
        """The manager's Raft member died of its storage. A full disk is waited out with the
        API saying so (`_wait_out_full_disk`); anything else stops the agent, and the
        supervisor's restart re-reads the log (after a failed write or fsync that is the only
        honest way on: what reached the disk is unknown)."""
        from ..raft.storage import disk_full

        if not disk_full(exc):
            self._fatal("raft", exc)
            return
        self._restarter = Background("disk-full", lambda: self._wait_out_full_disk(exc), on_death=self._fatal)
        self._restarter.start()

    async def _wait_out_full_disk(self, exc: BaseException) -> None:
        """Serve a 503 that says the disk is full (not "not a manager", not a refused
        connection) while this manager takes no part; the worker half keeps running, so the
        node's tasks stay where they are. Once space is back, restart the components: the
        manager comes back from its files (a torn tail cut off) and catches up from the
        leader. Nothing it had not made durable was acknowledged."""
        from ..raft.errors import DiskFull

        raft_dir = self.state_dir / "raft"
        message = str(DiskFull(str(raft_dir), exc))
        log.error("%s", message)
        for r in self._api_runners:
            await r.cleanup()
        self._api_runners = []
        from ..api.locked import make_unavailable_app

        runners = await self._serve_api(make_unavailable_app(
            message, node_id=self.state.node_id, node_addr=self.advertise_addr.rpartition(":")[0],
            engine_version=__version__, hostname=self.hostname, authorize=self._api_authorize))
        try:
            while not self._stop.is_set() and _free_bytes(raft_dir) < _room_needed(raft_dir):
                try:
                    await asyncio.wait_for(self._stop.wait(), DISK_POLL_S)
                except TimeoutError:
                    pass
        finally:
            for r in runners:
                await r.cleanup()
        if self._stop.is_set():
            return
        log.info("space is free again in %s (%d MiB): restarting this agent's components from its files",
                 raft_dir, _free_bytes(raft_dir) >> 20)
        await self._restart(demoted=False)

    async def stop_manager(self) -> None:
        for r in self._api_runners:
            await r.cleanup()
        self._api_runners = []
        if self.manager:
            await self.manager.stop()
            self.manager = None

    def _initial_transaction(self):
        """The new swarm's first state: its cluster object (with the CA `init` made in the
        certs directory) and this node."""
        from ..ca.authority import RootCA
        from ..manager.bootstrap import initial_transaction

        cdir = certs_dir(self.state_dir)
        ca = RootCA.from_pem((cdir / ROOT_CA_CERT).read_bytes(), (cdir / ROOT_CA_KEY).read_bytes())
        return initial_transaction(
            cluster_id=self.state.cluster_id,
            node_id=self.state.node_id,
            raft_id=self.state.raft_id,
            hostname=self.hostname,
            advertise_addr=self.advertise_addr,
            ca=ca,
        )

    async def _start_api(self, mgr: Manager) -> None:
        from ..api import make_app, routes_logs
        from ..manager.controlapi import ControlAPI

        app = make_app(ControlAPI(mgr), engine_version=__version__, hostname=self.hostname, authorize=self._api_authorize)
        routes_logs.setup(app, mgr.logs)
        self._api_runners.extend(await self._serve_api_front(mgr, app))

    async def _serve_api_front(self, mgr: Manager, app) -> list:
        """The Docker API of a running manager: its listeners on the front thread
        (`api/front.py`), which answers the list and inspect reads itself and passes every
        other request to `app`, served here on a private socket. Returns the runners, the
        front first (stopped first)."""
        from ..api.app import REQUEST_SECONDS
        from ..api.front import ApiFront, FrontControl, backend_socket, make_front_app
        from ..api.serve import serve_unix

        backend = backend_socket(str(self.cfg.api_socket) if self.cfg.api_socket else None, self.state_dir)
        backend.parent.mkdir(parents=True, exist_ok=True)
        runners = [await serve_unix(app, str(backend), mode=0o600)]
        tcp = await self._api_tcp()
        control = FrontControl(mgr, asyncio.get_running_loop())
        front = ApiFront(
            lambda: make_front_app(control, engine_version=__version__, hostname=self.hostname,
                                   authorize=self._api_authorize),
            backend,
            unix_path=str(self.cfg.api_socket) if self.cfg.api_socket else None,
            tcp=tcp,
        )
        try:
            await front.start()  # the public socket's directory is the backend's, made above
        except BaseException:
            await runners[0].cleanup()
            raise
        self.api_latency = front.app[REQUEST_SECONDS]
        self.api_read_wait = control.read_wait
        self.api_read_lane = control.lane_counts
        return [front, *runners]

    async def _serve_api(self, app) -> list:
        """The Docker API listeners (root-only unix socket, TCP with client certificates)."""
        from ..api.serve import serve_tcp, serve_unix

        runners = []
        if self.cfg.api_socket:
            Path(self.cfg.api_socket).parent.mkdir(parents=True, exist_ok=True)
            runners.append(await serve_unix(app, str(self.cfg.api_socket)))
        tcp = await self._api_tcp()
        if tcp is not None:
            runners.append(await serve_tcp(app, *tcp))
        return runners

    async def _api_tcp(self) -> tuple[str, int, object] | None:
        """Where and with what TLS context the API's TCP listener serves; None when there is
        none (not configured, or the key is sealed and there is no API key pair)."""
        if not self.cfg.api_listen:
            return None
        tls = await asyncio.to_thread(self._api_tls)
        if tls is None:
            log.warning("the node key is sealed and there is no API key pair: the Docker API is served on the "
                        "unix socket %s only until this manager is unlocked", self.cfg.api_socket)
            return None
        host, _, port = self.cfg.api_listen.rpartition(":")
        return host, int(port), tls

    # ---------------------------------------------------------------- leaving
    @staticmethod
    def wipe(state_dir: Path) -> None:
        from .enroll import FILES

        for sub in ("raft", "certs", "node.json", JOINING_AS, *FILES):
            p = Path(state_dir) / sub
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


DISK_POLL_S = 1.0
STARTUP_TRIM_S = 5.0


def _import_manager_half() -> None:
    """Every module a manager's start imports (start, start_manager, _start_api and the
    locked path), so the event loop imports none of them after this ran in a thread."""
    import importlib

    import_aiohttp()
    for name in ("swarmkit_py.raft.storage", "swarmkit_py.manager.manager", "swarmkit_py.manager.bootstrap",
                 "swarmkit_py.manager.controlapi", "swarmkit_py.api", "swarmkit_py.api.routes_logs",
                 "swarmkit_py.api.front", "swarmkit_py.api.serve", "swarmkit_py.api.locked"):
        importlib.import_module(name)
    importlib.import_module("swarmkit_py.store.objects.base").build_all()


def import_aiohttp() -> None:
    """Import aiohttp (the Docker API's server) without its client's default TLS contexts
    loading the system's CA bundle. aiohttp makes two when it is imported, and each reads
    every certificate of the system's bundle (~60 ms of CPU apiece here: ~0.12 s of every
    manager's start, five at once on a bootstrap's path; bench/README.md, round 10). The
    agent is never aiohttp's client, and verifies every TLS peer against the cluster's CA,
    never the system's: so for the import, `ssl.SSLContext.set_default_verify_paths` (what
    `create_default_context` and aiohttp call) does nothing, and those two contexts hold no
    trust anchor: a client made with them would refuse every server, not trust one. Nothing
    in the agent calls it (it would load nothing during the import, in another thread)."""
    import ssl
    import sys

    if "aiohttp" in sys.modules:
        return
    real = ssl.SSLContext.__dict__.get("set_default_verify_paths")
    ssl.SSLContext.set_default_verify_paths = lambda self: None
    try:
        import aiohttp  # noqa: F401
    finally:
        if real is None:
            del ssl.SSLContext.set_default_verify_paths
        else:
            ssl.SSLContext.set_default_verify_paths = real


def _keyring():
    from ..raft.storage import Keyring

    return Keyring


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _room_needed(path: Path) -> int:
    """Free space before a manager stopped by a full disk starts again: enough for a new WAL
    segment and a snapshot to begin, 16 MiB or a tenth of the filesystem, whichever is less."""
    st = os.statvfs(path)
    return min(16 << 20, st.f_blocks * st.f_frsize // 10)


# A certificate's subject is a pure function of its bytes: parsed once per certificate, not per
# request (parsing was 3-5 % of the leader's samples on the API's service-update path). What
# the identity may do (its role now, revocation) is still decided per request by the caller.
_identity_of_der = functools.lru_cache(maxsize=256)(identity_from_cert)


def api_identity(request):
    """The API caller's certificate identity; None on the unix socket (no TLS)."""
    transport = request.transport
    sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
    if sslobj is None:
        return None
    der = sslobj.getpeercert(binary_form=True)
    if der is None:
        raise PermissionError("the Docker API requires a client certificate issued by the cluster CA")
    return _identity_of_der(der)


__all__ = ["Agent"]


def _client_once(docker_host: str | None):
    """A Docker client made on first use (the engine may come up after the agent)."""
    holder: list = []

    def get():
        if not holder:
            holder.append(connect(docker_host))
        return holder[0]

    return get


