"""The dispatcher: worker sessions, heartbeats and node Ready/Down, on the Raft leader only.

Why only on the leader: node status is cluster state, written through Raft, and one writer per
node avoids two managers racing to mark the same node Ready and Down. Every manager registers
the RPC methods, but only the one that was started (on winning an election) serves them; the
others answer ``not_leader`` with the leader's address so a worker turns around in one call.

Down detection and leader changes
---------------------------------
A node is Down when no heartbeat arrived for ``grace = grace_multiplier * heartbeat_period``
and nothing else proves it alive. The verdict Down moves the node's tasks at once
(orchestrator/nodefail.py), so a wrong Down costs healthy replicas; the rules below are about
never giving it to a live node while still giving it fast to a dead one.

1. Managers are judged by Raft's own evidence as well. Raft traffic between the leader and
   every member flows every 100 ms, so a manager whose heartbeat timer expired is still alive
   if its Raft member spoke within the last heartbeat period (``directory.last_contact``, ten
   Raft heartbeats): it stays Ready while its worker session moves to a new leader. When both
   are silent (no session heartbeat for ``grace``, no Raft message for a period) it is Down,
   on the heartbeat clock like any worker. After an election the new leader has no heartbeat
   history, but it heard the old leader's Raft heartbeats until it died, so every manager's
   first deadline is ``grace`` after its last Raft word (never earlier than one period from the
   election, so live followers have answered the new leader's first appends): the old
   leader's host, the one node that matters then, is Down ``grace`` after it last spoke - as
   fast as a crashed worker, not ``grace`` after the election, nor Swarm's 2 x grace.
2. A node whose session moved to the new leader is judged on the new session's clock only:
   the new leader starts with no sessions, and a session opened here re-arms the timer from
   the moment it opened.
3. A worker (no Raft evidence) that has not opened a session with the new leader one grace
   after the election is shown ``unknown`` (as Swarm does, but only for the nodes actually in
   doubt) and Down only ``reconnect_multiplier * grace`` after the election. Workers learn the
   new leader within milliseconds by a push from a surviving manager (``dispatcher.watch``,
   below, and worker/session.py), so a live worker is normally back long before; the longer
   grace is for the rare worker that lost its standby too, and costs only a worker that
   crashed together with the leader a few more seconds.
4. In a large cluster the new leader is the bottleneck of that reconnect, not the workers:
   every node re-opens its session (a TLS handshake, the session, its assignments) with one
   process, and at 1,000 nodes on a loaded machine that took longer than any fixed grace
   (issue 13: 900+ live nodes declared Down and 9,000 tasks moved after a failover). So the
   reconnect window stays open while the nodes in doubt keep arriving: one still missing is
   declared Down only once a whole ``grace`` has passed without any of them reconnecting
   (the leader is no longer busy taking them), and never later than ``reconnect_grace`` plus
   the time to accept them all at ``MIN_RECONNECT_RATE`` sessions a second. A worker that died
   with the leader is then Down ``grace`` after the last live one is back, instead of a live
   node being Down because it queued behind the others.
5. The same holds outside elections: a worker whose timer expires while connections wait
   for a TLS handshake at this manager (``backlog``: the cluster port's queue, see
   rpc/tls_accept.py) may be one of them, re-opening its session after the leader was too slow
   to answer its heartbeats. It gets one more period at a time while the queue is not empty,
   for at most ``reconnect_grace`` past its deadline; a silence with an empty queue is the
   node's own. Seen at 1,000 nodes during a 10,000-task fill on a loaded machine: the sessions
   the starved leader lost came back through the queue after their grace, 1,032 nodes were
   declared Down and their tasks moved, which starved the leader further.
6. A mass silence is the leader's problem too: when more than ``MASS_SILENCE_FRACTION`` of the
   tracked nodes (and at least ``MASS_SILENCE_MIN``, so a small cluster never gets here) are
   silent past their grace at once, the leader is behind on reading them (its process starved:
   a loaded machine runs it in slices and its heartbeats wait unread in the sockets, while the
   sweep itself still wakes on time) or cut off from them, and declaring them all Down would
   move every task they run for nothing (Kubernetes' node lifecycle controller stops evicting
   for the same reason when most of a zone is unhealthy). The silent are counted as those
   past their grace plus those already half a period later than a beating node can be (their
   last heartbeats were spread over a period, so their deadlines are too: counting only the
   deadlines of one sweep, the first few of a mass silence were declared Down alone). They
   are kept one period at a time,
   at most ``reconnect_grace`` past their deadline, as in rule 5; a real mass failure is
   declared that much later. Seen at 1,000 nodes: 470 live nodes declared Down in 10 s while
   the leader's loop ran 3-8 % of the time.

Kernel evidence: a power cut found before a grace ends
------------------------------------------------------
``grace`` has to outlast a live worker's longest silence (a stalled process on a loaded
machine), so it cannot shrink without risking a wrong Down. But a late heartbeat can be told
apart from a dead host without shortening it: the host's *kernel* acknowledges TCP segments
within a round trip whether or not the agent's process runs, and a host that lost power (or
was cut off) acknowledges nothing. So once a node's heartbeat is ``suspect_multiplier``
periods late, the leader sends a ``dispatcher.probe`` notification down its session (the
worker ignores it) and, ``probe_wait`` later, reads the connection's TCP_INFO
(rpc/tcpinfo.py): data in flight, retransmitted, and no ACK since the probe means the host is
not answering, and the node is Down then (unless Raft heard it within a period: a manager).
Anything else (an ACK, no TCP_INFO on this platform, no session here) leaves the node to the
heartbeat clock above: this can only make a Down earlier for a host that does not answer,
never for a process that is merely slow. A power-cut worker is Down about
``suspect_multiplier * period + probe_wait`` after its last heartbeat instead of ``grace``.
Managers have the same evidence on their Raft connections (``directory.host_silent``): a
manager Raft has not heard from for ``probe_wait`` (the old leader's host after an election)
is looked at every ``probe_wait / 2`` and is Down once its host is silent there, rather than
``grace`` after its last Raft word; Raft contact no longer keeps a manager Ready once its host
has stopped acknowledging. (In the lab this has not yet been seen to shorten the old
leader's Down: bench/RESCHEDULE.md.)

Leader watch
------------
Every manager, leader or not, serves ``dispatcher.watch``: the caller's connection is
subscribed to leader changes and gets a ``dispatcher.leader`` notification
``{"leader_addr", "term"}`` as soon as this manager's Raft member learns of a new leader. A
worker keeps one such warm standby connection to a manager other than its session's, so when
the leader's host loses power (no FIN, no RST: its session just goes silent) the worker is
told where the new leader is by a survivor, instead of waiting for a heartbeat timeout and a
connect timeout to the dead host.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from ...background import Background
from ...proto import (
    ASSIGNMENTS_RESYNC,
    HEARTBEAT,
    INVALID_ARGUMENT,
    LEADER_PUSH,
    MANAGERS_PUSH,
    NODE_NOT_FOUND,
    NOT_LEADER,
    PERMISSION_DENIED,
    PROBE,
    SESSION,
    SESSION_INVALID,
    TASK_STATUS,
    WATCH,
    not_leader_message,
)
from ...raft.errors import NoQuorum, NotLeader, ProposalDropped, Stopped
from ...rpc import UNAVAILABLE, PeerInfo, RpcError, RpcServer, RpcUnavailable
from ...store import (
    DELETE,
    NodeDescription,
    NodeState,
    NotFound,
    StoreError,
)
from ...store.follow import StoreFollower
from ..proposer import Proposer
from .assignments import AssignmentPusher
from .directory import ManagerDirectory, StoreDirectory
from .heartbeats import HeartbeatTracker
from .identity import Identify, cert_identity
from .netmap import NetmapPusher
from .sessions import SessionTable
from .status import StatusChange, StatusWriter
from .taskstatus import TaskStatusWriter, parse_updates

log = logging.getLogger(__name__)

HEARTBEAT_FAILURE = "heartbeat failure"
DEFAULT_MAX_HEARTBEAT_RATE = 250.0
"""Heartbeats per second the leader is asked to serve at most (see ``heartbeat_period``)."""
NOT_RECONNECTED = "no session with the new leader since the leader change"
MASS_SILENCE_FRACTION = 0.1
MASS_SILENCE_MIN = 20
"""Rule 6 of the module docstring: more silent nodes than this fraction of the tracked ones,
and than this number, is a mass silence."""
MIN_RECONNECT_RATE = 10.0
"""Sessions a second a new leader is assumed to accept at least after an election: the
reconnect window (rule 4 of the module docstring) never stays open longer than the nodes in
doubt at this rate, past ``reconnect_grace``."""

SessionListener = Callable[[str], Any]


class Dispatcher:
    """Serves ``dispatcher.session`` and ``dispatcher.heartbeat`` (see ``proto/dispatcher.py``).

    ``identify`` maps a caller to its node id: the certificate by default, or
    ``identity.params_identity`` in tests without TLS. ``directory`` answers where the managers
    and the leader are (``ClusterDirectory(ctx)`` in a manager; the store by default).
    """

    def __init__(
        self,
        proposer: Proposer,
        *,
        heartbeat_period: float = 1.0,
        max_heartbeat_rate: float | None = DEFAULT_MAX_HEARTBEAT_RATE,
        grace_multiplier: float = 3,
        reconnect_multiplier: float = 2,
        suspect_multiplier: float | None = 1.25,
        probe_wait: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        identify: Identify | None = None,
        directory: ManagerDirectory | None = None,
        backlog: Callable[[], int] | None = None,
    ) -> None:
        if heartbeat_period <= 0 or grace_multiplier < 1 or reconnect_multiplier < 1:
            raise ValueError(
                "heartbeat_period must be > 0, grace_multiplier and reconnect_multiplier >= 1"
            )
        self.proposer = proposer
        if max_heartbeat_rate is not None and max_heartbeat_rate <= 0:
            raise ValueError("max_heartbeat_rate must be > 0 (or None: no limit)")
        self.base_period = float(heartbeat_period)
        self.max_heartbeat_rate = max_heartbeat_rate
        self.grace_multiplier = grace_multiplier
        self.reconnect_multiplier = reconnect_multiplier
        if suspect_multiplier is not None and not 1 <= suspect_multiplier < grace_multiplier:
            raise ValueError("suspect_multiplier must be in [1, grace_multiplier) (or None: off)")
        if probe_wait <= 0:
            raise ValueError("probe_wait must be > 0")
        self.suspect_multiplier = suspect_multiplier
        self.probe_wait = float(probe_wait)
        self._clock = clock
        self._identify = identify or cert_identity()
        self.directory = directory or StoreDirectory(proposer.store)
        self._backlog = backlog
        self._in_doubt: dict[str, float] = {}  # node -> its first expiry kept (rules 5 and 6)
        self._sessions = SessionTable()
        self._tracker = HeartbeatTracker()
        # kernel evidence (module docstring): when to look at a late node's connection next,
        # and when it was probed (since its last heartbeat)
        self._suspects = HeartbeatTracker()
        self._probed: dict[str, float] = {}
        # nodes known at the election that have not opened a session with this leader yet,
        # how many there were, and when the last of them reconnected (rule 4)
        self._unconfirmed: set[str] = set()
        self._unconfirmed_at_start = 0
        self._last_reconnect: float | None = None
        # connections subscribed to leader changes (dispatcher.watch), on every manager
        self._watchers: set = set()
        self._spread: tuple[int, float] | None = None  # (store index, move_spread)
        self._push_tasks: set[asyncio.Task] = set()
        self._leader_seen: tuple[str | None, int] | None = None
        self._term = 0
        self._writer: StatusWriter | None = None
        self._tasks: set[asyncio.Task] = set()
        """Short-lived jobs (declaring nodes down, session listeners), cancelled on stop."""
        self._node_follower = StoreFollower(proposer.store, "node", name="dispatcher nodes")
        self._loops = (
            Background("dispatcher-sweep", self._sweep_loop),
            Background(
                "dispatcher-node-watch",
                lambda: self._node_follower.follow(self._seed_all, self._on_node_event),
            ),
            Background("dispatcher-managers", self._announce_managers),
        )
        self._listeners: list[SessionListener] = []
        self._epoch = 0  # bumped on every start/stop, so a handler can see it straddled one
        self.started_at: float | None = None
        self.counters = {
            "sessions_opened": 0,
            "heartbeats": 0,
            "nodes_declared_down": 0,
            "nodes_declared_unknown": 0,
            "kept_ready_by_raft": 0,
            "probes_sent": 0,
            "nodes_down_by_kernel_evidence": 0,
            "leader_pushes": 0,
            "stalls_forgiven": 0,
            "kept_ready_by_backlog": 0,
            "kept_ready_by_mass_silence": 0,
            "assignment_resyncs": 0,
        }
        # Status-write totals of writers from earlier terms, so the counters never go back.
        self._past_writes = (0, 0)
        # Task assignments and status reports (assignments.py, taskstatus.py): per term, like
        # the node status writer.
        self.assignments = AssignmentPusher(self)
        self.netmap = NetmapPusher(self)
        self.add_session_listener(self.netmap.session_opened)
        self._task_writer: TaskStatusWriter | None = None
        self.add_session_listener(self.assignments.session_opened)
        self.directory.on_leader_change(self.leader_changed)

    @property
    def heartbeat_period(self) -> float:
        """The period workers are asked to beat at: the configured one, or longer once the
        nodes beating at it would send more than ``max_heartbeat_rate`` heartbeats a second
        (rounded up to half seconds so it does not change with every join). Every heartbeat
        costs the leader a TLS record each way and a handler on its one event loop; scaled
        this way the load stays flat as the cluster grows and down detection (``grace``,
        three periods) is what grows: 3 s up to 250 nodes, 12 s at 1,000, 24 s at 2,000 with
        the defaults. Nodes counted are those with an armed deadline (live or in doubt)."""
        n = len(self._tracker)
        rate = self.max_heartbeat_rate
        if rate is None or n <= self.base_period * rate:
            return self.base_period
        return math.ceil(2 * n / rate) / 2

    @property
    def grace(self) -> float:
        return self.heartbeat_period * self.grace_multiplier

    @property
    def reconnect_grace(self) -> float:
        """After an election, how long a node without Raft evidence has to reconnect."""
        return self.grace * self.reconnect_multiplier

    def reconnect_deadline(self, now: float) -> float:
        """Until when a node in doubt since the election may still reconnect (rule 4 of the
        module docstring): ``reconnect_grace`` after the election, longer while the others
        keep arriving (one ``grace`` after the last of them), capped by the time to accept
        them all at ``MIN_RECONNECT_RATE``."""
        started = self.started_at if self.started_at is not None else now
        last = self._last_reconnect if self._last_reconnect is not None else started
        cap = started + self.reconnect_grace + self._unconfirmed_at_start / MIN_RECONNECT_RATE
        return min(cap, max(started + self.reconnect_grace, last + self.grace))

    @property
    def running(self) -> bool:
        return self._writer is not None

    # -- wiring -------------------------------------------------------------------------------

    def register(self, server: RpcServer) -> None:
        """Add the RPC methods; do it on every manager, leader or not."""
        server.add_handler(SESSION, self._handle_session)
        server.add_handler(HEARTBEAT, self._handle_heartbeat)
        server.add_handler(TASK_STATUS, self._handle_task_status)
        server.add_handler(WATCH, self._handle_watch)
        server.add_handler(ASSIGNMENTS_RESYNC, self._handle_assignments_resync)

    def add_session_listener(self, listener: SessionListener) -> None:
        """``listener(node_id)`` after each session opens: where assignments (issue 4) will
        send a worker its full task set before pushing incremental changes."""
        self._listeners.append(listener)

    # -- leadership ---------------------------------------------------------------------------

    def start(self) -> None:
        """Become the serving dispatcher (call on winning an election)."""
        if self.running:
            return
        self._epoch += 1
        self._writer = StatusWriter(self.proposer)
        self.started_at = self._clock()
        self._seed_timers(self.started_at, election=True)
        self._unconfirmed_at_start = len(self._unconfirmed)
        self._last_reconnect = self.started_at
        for loop in self._loops:
            loop.start()
        self._task_writer = TaskStatusWriter(self.proposer)
        self.assignments.start()
        self.netmap.start()
        log.info(
            "dispatcher started: %d nodes get until +%.1fs to reconnect (managers: judged by "
            "Raft contact)",
            len(self._tracker),
            self.grace,
        )

    async def stop(self) -> None:
        """Stop serving (call on losing leadership); open sessions become invalid and workers
        are sent to the new leader by their next heartbeat."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._epoch += 1
        for loop in self._loops:
            await loop.stop()
        tasks, self._tasks = self._tasks, set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._past_writes = self._write_totals(writer)
        await self.assignments.stop()
        await self.netmap.stop()
        task_writer, self._task_writer = self._task_writer, None
        if task_writer is not None:
            await task_writer.close(RpcError(NOT_LEADER, not_leader_message(self._leader_addr())))
        await writer.close(RpcError(NOT_LEADER, not_leader_message(self._leader_addr())))
        self._sessions.clear()
        self._tracker.clear()
        self._suspects.clear()
        self._probed.clear()
        self._unconfirmed.clear()
        self._in_doubt.clear()

    def _seed_timers(self, now: float, election: bool = False) -> None:
        """Arm a timer for every node not Down and not tracked yet. A manager's deadline is
        set from its last Raft contact (the old leader's host: ``grace`` after it last spoke,
        but never before one period from now, so live followers have answered our first
        appends); everyone else gets one grace from now."""
        for node in self.proposer.store.view().list("node"):
            if node.status.state == NodeState.DOWN or node.id in self._tracker:
                continue
            deadline = now + self.grace
            age = self._last_contact(node.id)
            if age is not None:
                deadline = now + max(self.heartbeat_period, self.grace - age)
                silent = self._host_silent(node.id)
                if silent:
                    deadline = now  # judged at the first sweep (_judge)
                else:  # _raft_check: the old leader may have died only just before the election
                    self._suspects.set(node.id, now + self.probe_wait / 2)
                if election:
                    log.info("manager %s: Raft last heard %.2fs ago, host silent: %s; judged "
                             "in %.2fs", node.id, age, silent, deadline - now)
            self._tracker.set(node.id, deadline)
            if election:
                self._unconfirmed.add(node.id)

    def _host_silent(self, node_id: str) -> bool:
        silent = getattr(self.directory, "host_silent", None)
        try:
            return bool(silent is not None and silent(node_id))
        except Exception:
            log.exception("manager directory failed to tell whether %s's host is silent", node_id)
            return False

    def _last_contact(self, node_id: str) -> float | None:
        try:
            return self.directory.last_contact(node_id)
        except Exception:
            log.exception("manager directory failed to give Raft contact of %s", node_id)
            return None

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    # -- RPC handlers -------------------------------------------------------------------------

    async def _handle_session(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        params = _params(params)
        writer, epoch = self._require_running()
        node_id = self._identify(peer, params)
        description = _description(params.get("description"))
        addr = params.get("addr") or (peer.address[0] if peer.address else None)
        if addr is not None and not isinstance(addr, str):
            raise RpcError(INVALID_ARGUMENT, "addr must be a string")
        features = params.get("features") or []
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise RpcError(INVALID_ARGUMENT, "features must be a list of strings")
        if self.proposer.store.view().get_node(node_id) is None:
            raise RpcError(NODE_NOT_FOUND, f"node {node_id} is not part of this cluster")
        # Arm the timer before the write: an expiry sweep while the write is in flight would
        # otherwise queue a Down behind this Ready.
        now = self._clock()
        self._heard(node_id, now)
        self._in_doubt.pop(node_id, None)
        if node_id in self._unconfirmed:
            self._unconfirmed.discard(node_id)
            self._last_reconnect = now
        change = StatusChange(NodeState.READY, None, addr, description)
        await self._write(writer, node_id, change)
        if epoch != self._epoch:
            raise RpcError(NOT_LEADER, not_leader_message(self._leader_addr()))
        session = self._sessions.open(node_id, peer.connection, frozenset(features[:16]))
        self.counters["sessions_opened"] += 1
        # After the answer is on the wire (call_soon runs once this handler has returned and
        # its response was written), so a push never overtakes the session answer.
        asyncio.get_running_loop().call_soon(self._notify_listeners, node_id, epoch)
        return {
            "session_id": session.session_id,
            "node_id": node_id,
            "heartbeat_period": self.heartbeat_period,
            "managers": self.directory.managers(),
        }

    def _notify_listeners(self, node_id: str, epoch: int) -> None:
        if epoch != self._epoch:
            return
        for listener in self._listeners:
            try:
                result = listener(node_id)
                if inspect.isawaitable(result):
                    self._spawn(result, f"dispatcher-session-listener {node_id}")
            except Exception:
                log.exception("session listener failed for node %s", node_id)

    async def _handle_heartbeat(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        params = _params(params)
        self._require_running()
        session_id = params.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            raise RpcError(INVALID_ARGUMENT, "session_id is required")
        session = self._sessions.get(session_id)
        if session is None:
            raise RpcError(SESSION_INVALID, "unknown or expired session; open a new session")
        if session.connection is not None and session.connection is not peer.connection:
            raise RpcError(SESSION_INVALID, "session belongs to another connection; open a new one")
        self._heard(session.node_id, self._clock())
        if self._in_doubt:
            self._in_doubt.pop(session.node_id, None)
        self.counters["heartbeats"] += 1
        return {"heartbeat_period": self.heartbeat_period, "managers": self.directory.managers()}

    def _heard(self, node_id: str, now: float) -> None:
        """A session opened or a heartbeat arrived: re-arm the node's timers."""
        self._tracker.set(node_id, now + self.grace)
        self._probed.pop(node_id, None)
        if self.suspect_multiplier is not None:
            self._suspects.set(node_id, now + self.heartbeat_period * self.suspect_multiplier)

    async def _handle_task_status(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        """A worker's task reports (wire and rules in taskstatus.py); only its own tasks."""
        params = _params(params)
        self._require_running()
        writer = self._task_writer
        node_id = self._session_node(peer, params)
        updates = parse_updates(params)
        view = self.proposer.store.view()
        for u in updates:
            task = view.get_task(u.task_id)
            if task is not None and task.node_id != node_id:
                raise RpcError(
                    PERMISSION_DENIED, f"task {u.task_id} is not assigned to node {node_id}"
                )
        try:
            return await writer.submit(updates)
        except RpcError:
            raise
        except NotLeader:
            raise RpcError(NOT_LEADER, not_leader_message(self._leader_addr())) from None
        except (NoQuorum, ProposalDropped, Stopped, StoreError) as e:
            raise RpcError(UNAVAILABLE, f"cannot record task status: {e}") from None

    async def _handle_assignments_resync(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        """The worker could not apply a change of its set (it missed the push before it):
        its full set goes out again on this session."""
        params = _params(params)
        self._require_running()
        self.assignments.session_opened(self._session_node(peer, params))
        self.counters["assignment_resyncs"] += 1
        return {}

    def session_node(self, peer: PeerInfo, params: Mapping[str, Any]) -> str:
        """The node of the caller's open session (raises SESSION_INVALID / NOT_LEADER), for
        other leader services answering on sessions (the log broker)."""
        self._require_running()
        return self._session_node(peer, params)

    def _session_node(self, peer: PeerInfo, params: Mapping[str, Any]) -> str:
        """The node of an open session, checked as a heartbeat is (same connection)."""
        session_id = params.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            raise RpcError(INVALID_ARGUMENT, "session_id is required")
        session = self._sessions.get(session_id)
        if session is None:
            raise RpcError(SESSION_INVALID, "unknown or expired session; open a new session")
        if session.connection is not None and session.connection is not peer.connection:
            raise RpcError(SESSION_INVALID, "session belongs to another connection; open a new one")
        return session.node_id

    def _require_running(self) -> tuple[StatusWriter, int]:
        writer = self._writer
        if writer is None:
            raise RpcError(NOT_LEADER, not_leader_message(self._leader_addr()))
        return writer, self._epoch

    def _leader_addr(self) -> str | None:
        try:
            return self.directory.leader_addr()
        except Exception:
            log.exception("manager directory failed to name the leader")
            return None

    async def _write(self, writer: StatusWriter, node_id: str, change: StatusChange) -> bool:
        """Submit and wait, turning store and Raft failures into the wire's error codes."""
        try:
            return await writer.submit(node_id, change)
        except RpcError:
            raise
        except NotFound:
            raise RpcError(NODE_NOT_FOUND, f"node {node_id} is not part of this cluster") from None
        except NotLeader:
            raise RpcError(NOT_LEADER, not_leader_message(self._leader_addr())) from None
        except (NoQuorum, ProposalDropped, Stopped, StoreError) as e:
            raise RpcError(UNAVAILABLE, f"cannot record node status: {e}") from None

    def _write_totals(self, writer: StatusWriter | None) -> tuple[int, int]:
        tx, nodes = self._past_writes
        if writer is not None:
            tx, nodes = tx + writer.transactions, nodes + writer.nodes_written
        return tx, nodes

    # -- down detection -----------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        """Wake at the earliest deadline (at most once per period/10, at least once per
        period) and mark every expired node Down in one batch.

        A sweep that wakes more than half a period late means this process did not run
        meanwhile (an overloaded leader: a huge transaction applied, a starved CPU). Heartbeats
        that arrived then are still unread in the sockets, so the silence says nothing about
        the workers: every deadline moves by the stall before anyone is judged. Without that,
        a leader stalled for one grace declared every node Down at once and moved all their
        tasks (seen with a 100,000-replica service on a loaded machine, issue 13)."""
        min_sleep = self.heartbeat_period / 10
        expected: float | None = None
        while True:
            now = self._clock()
            if expected is not None and now - expected > self.heartbeat_period / 2:
                self._tracker.postpone(now - expected)
                self._suspects.postpone(now - expected)
                self.counters["stalls_forgiven"] += 1
                log.warning("dispatcher did not run for %.1fs (leader overloaded); heartbeat "
                            "deadlines moved by as much", now - expected)
            expired = self._tracker.pop_expired(now)
            if expired:
                down, unknown = self._judge(expired, now)
                if down:
                    self._spawn(self._declare_down(down), "dispatcher-declare-down")
                if unknown:
                    self._spawn(self._declare_unknown(unknown), "dispatcher-declare-unknown")
            gone = [n for n in self._suspects.pop_expired(now) if self._kernel_check(n, now)]
            if gone:
                self._spawn(self._declare_down(gone), "dispatcher-declare-down")
            nxt = min((d for d in (self._tracker.next_deadline(), self._suspects.next_deadline())
                       if d is not None), default=None)
            wait = self.heartbeat_period if nxt is None else nxt - self._clock()
            delay = min(max(wait, min_sleep), self.heartbeat_period)
            expected = self._clock() + delay
            await asyncio.sleep(delay)

    def _kernel_check(self, node_id: str, now: float) -> bool:
        """A node's heartbeat is late (module docstring, "kernel evidence"): probe its session
        connection, or, once probed, read what the kernel saw. True: its host has not
        acknowledged anything since the probe, and it is Down now (its timer is disarmed so
        the Down is not written twice)."""
        if node_id not in self._tracker:
            return False
        session = self._sessions.for_node(node_id)
        conn = session.connection if session is not None else None
        if conn is None:
            return self._raft_check(node_id, now)
        info = conn.tcp_info() if hasattr(conn, "tcp_info") else None
        if info is None:
            return False  # no TCP_INFO: the heartbeat clock decides
        probed = self._probed.get(node_id)
        if probed is None:
            try:
                conn.notify_nowait(PROBE, None)
            except RpcUnavailable:
                return False
            self.counters["probes_sent"] += 1
            self._probed[node_id] = now
            self._suspects.set(node_id, now + self.probe_wait)
            return False
        since = now - probed
        if info.unacked == 0 or info.last_ack_recv_s < since - 0.05:
            return False  # its kernel answered since the probe: alive, only late
        if not info.peer_silent_for(since - 0.05):
            # in flight and unanswered, but not retransmitted yet (a long RTO): look again
            self._suspects.set(node_id, now + max(self.probe_wait / 2, info.rto_s))
            return False
        age = self._last_contact(node_id)
        if age is not None and age < self.heartbeat_period:
            return False  # a manager Raft still hears: the session's path only is broken
        self._tracker.discard(node_id)
        self._probed.pop(node_id, None)
        self.counters["nodes_down_by_kernel_evidence"] += 1
        log.warning("node %s: no heartbeat for %.1fs and its host has acknowledged nothing for "
                    "%.1fs (%d retransmissions): down or cut off", node_id,
                    self.heartbeat_period * (self.suspect_multiplier or 0) + since,
                    info.last_ack_recv_s, info.retransmits)
        return True

    def _raft_check(self, node_id: str, now: float) -> bool:
        """A manager without a session here (the old leader's host after an election, or a
        manager whose session has not moved yet): its Raft connection is the evidence. Down
        now when its host stopped acknowledging (``directory.host_silent``); while Raft has
        not heard from it for ``probe_wait``, look again every ``probe_wait / 2`` (this member's
        appends to it go unacknowledged within a retransmission timeout of its death), until
        its heartbeat timer decides. A live manager answers Raft within that time."""
        age = self._last_contact(node_id)
        if age is None:
            return False  # a worker: the heartbeat clock decides
        if self._host_silent(node_id):
            self._tracker.discard(node_id)
            self.counters["nodes_down_by_kernel_evidence"] += 1
            log.warning("manager %s: Raft has not heard from it for %.1fs and its host acknowledges "
                        "nothing: down or cut off", node_id, age)
            return True
        if age >= self.probe_wait:
            self._suspects.set(node_id, now + self.probe_wait / 2)
        return False

    def _judge(self, node_ids: list[str], now: float) -> tuple[list[str], list[str]]:
        """Expired heartbeat timers -> (Down, Unknown); the rest are re-armed (see the module
        docstring: Raft evidence for managers, a reconnect grace after an election)."""
        down, unknown = [], []
        reconnect_by = self.reconnect_deadline(now)
        backlog = self._handshake_backlog()
        expired = self._in_doubt.keys() | set(node_ids)
        # a beating node's deadline is at least grace - period away; half a period less: late
        late_by = now + self.grace - 1.5 * self.heartbeat_period
        silent = len(expired) + self._tracker.count_before(late_by, exclude=expired)
        tracked = len(self._tracker) + len(node_ids)
        mass = silent > max(MASS_SILENCE_MIN, MASS_SILENCE_FRACTION * tracked)
        for node_id in node_ids:
            age = self._last_contact(node_id)
            if age is not None:
                if age < self.heartbeat_period and not self._host_silent(node_id):
                    self.counters["kept_ready_by_raft"] += 1
                    self._tracker.set(node_id, now + self.heartbeat_period - age)
                else:
                    down.append(node_id)
            elif node_id in self._unconfirmed and now < reconnect_by:
                unknown.append(node_id)
                self._tracker.set(node_id, reconnect_by)
            elif (backlog or mass) and now < self._in_doubt.setdefault(node_id, now) + self.reconnect_grace:
                self.counters["kept_ready_by_backlog" if backlog else "kept_ready_by_mass_silence"] += 1
                self._tracker.set(node_id, now + self.heartbeat_period)
            else:
                self._in_doubt.pop(node_id, None)
                down.append(node_id)
        return down, unknown

    def _handshake_backlog(self) -> int:
        if self._backlog is None:
            return 0
        try:
            return self._backlog()
        except Exception:
            log.exception("reading the cluster port's handshake backlog failed")
            return 0

    async def _declare_unknown(self, node_ids: list[str]) -> None:
        writer = self._writer
        if writer is None:
            return
        # A node whose session opened since the sweep judged it has its Ready queued already:
        # an Unknown submitted after it would win and stay (heartbeats write nothing).
        node_ids = [n for n in node_ids if n in self._unconfirmed]
        change = StatusChange(NodeState.UNKNOWN, NOT_RECONNECTED, only_if=NodeState.READY)
        results = await asyncio.gather(
            *[writer.submit(n, change) for n in node_ids], return_exceptions=True
        )
        for node_id, result in zip(node_ids, results, strict=True):
            if result is True:
                self.counters["nodes_declared_unknown"] += 1
                log.warning("node %s is unknown: %s", node_id, NOT_RECONNECTED)
            elif isinstance(result, BaseException) and not isinstance(result, NotFound):
                log.warning("could not mark node %s unknown: %s", node_id, result)

    async def _declare_down(self, node_ids: list[str]) -> None:
        writer = self._writer
        if writer is None:
            return
        # the same for a node that opened a session (re-armed its timer) since the sweep
        node_ids = [n for n in node_ids if n not in self._tracker]
        for node_id in node_ids:
            self._sessions.drop_node(node_id)
        change = StatusChange(NodeState.DOWN, HEARTBEAT_FAILURE)
        futures = [writer.submit(n, change) for n in node_ids]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for node_id, result in zip(node_ids, results, strict=True):
            if result is True:
                self.counters["nodes_declared_down"] += 1
                log.warning("node %s is down: %s", node_id, HEARTBEAT_FAILURE)
            elif isinstance(result, NotFound):
                continue  # removed meanwhile
            elif isinstance(result, BaseException) and self._writer is writer:
                # No quorum or a conflict storm: try again in a period, unless the node has
                # opened a session since (then its own timer is armed and is the truth).
                log.warning("could not mark node %s down: %s", node_id, result)
                if node_id not in self._tracker:
                    self._tracker.set(node_id, self._clock() + self.heartbeat_period)

    # Following node changes the dispatcher did not make: a removed node loses its session,
    # and a node that shows up Ready without a session (applied after our start, restored from
    # a snapshot) gets a grace period like any other, so it cannot stay Ready forever.

    def _seed_all(self) -> None:
        self._seed_timers(self._clock())

    def _on_node_event(self, event) -> None:
        node = event.obj
        if event.action == DELETE:
            self._sessions.drop_node(node.id)
            self._tracker.discard(node.id)
            self._suspects.discard(node.id)
            self._probed.pop(node.id, None)
            self._unconfirmed.discard(node.id)
            self._in_doubt.pop(node.id, None)
        elif (
            node.status.state == NodeState.READY
            and node.id not in self._tracker
            and self._sessions.for_node(node.id) is None
        ):
            self._tracker.set(node.id, self._clock() + self.grace)

    # -- pushes and metrics -------------------------------------------------------------------

    async def push(self, node_id: str, method: str, params: Any = None, *,
                   frame: bytes | None = None) -> bool:
        """Send a notification down the node's session connection (``frame``: the same, framed
        already, for a message pushed to many sessions alike). False when the node has no
        open session here (not connected, or we are not the leader) or the send failed: the
        caller keeps the message and resends on the next session (see add_session_listener)."""
        session = self._sessions.for_node(node_id)
        if session is None or session.connection is None or session.connection.is_closed:
            return False
        try:
            if frame is None:
                await session.connection.notify(method, params)
            else:
                session.connection.write_frames(frame)
                await session.connection.drain()
        except RpcUnavailable:
            return False
        return True

    async def _announce_managers(self) -> None:
        """Push the manager list to every session as soon as it changes. Heartbeat answers
        carry it too, but a worker must not depend on its next heartbeat: if the leader dies
        right after a promotion, a worker that only knows the dead leader is stranded."""
        last = None
        while True:
            try:
                current = self.directory.managers()
                if current != last:
                    if last is not None:
                        log.info("managers changed: telling %d sessions", len(self._sessions))
                        for node_id in self._sessions.node_ids():
                            await self.push(node_id, MANAGERS_PUSH, {"managers": current})
                    last = current
            except Exception:
                log.exception("announcing the manager list failed; retrying")
            await asyncio.sleep(min(0.2, self.heartbeat_period / 5))

    def session_node_ids(self) -> list[str]:
        return list(self._sessions.node_ids())

    async def _handle_watch(self, peer: PeerInfo, params: Any) -> dict[str, Any]:
        """Subscribe the caller's connection to leader changes (any manager serves it); the
        answer is the leader as this manager sees it now, so the call doubles as a ping."""
        self._identify(peer, _params(params))
        conn = peer.connection
        if conn is not None and conn not in self._watchers and not conn.is_closed:
            self._watchers.add(conn)
            conn.add_close_callback(lambda: self._watchers.discard(conn))
        return {"leader_addr": self._leader_addr(), "term": self._term, "spread_s": self.move_spread()}

    def leader_changed(self, term: int) -> None:
        """Called (through the directory) when this manager's Raft member sees a new leader
        or loses it, whatever its own role: every watcher is told at once, from tasks (the
        caller is Raft's loop)."""
        self._term = max(self._term, int(term))
        leader = self._leader_addr()
        if leader is None or (leader, term) == self._leader_seen or not self._watchers:
            return
        self._leader_seen = (leader, term)
        params = {"leader_addr": leader, "term": term, "spread_s": self.move_spread()}
        for conn in list(self._watchers):
            task = asyncio.get_running_loop().create_task(
                self._notify_watcher(conn, params), name="dispatcher-leader-push"
            )
            self._push_tasks.add(task)
            task.add_done_callback(self._push_tasks.discard)

    def move_spread(self) -> float:
        """Over how many seconds the workers told of a new leader should spread their moves:
        every node re-opens its session (a TLS handshake, the session, its assignments), and
        the new leader takes them at the rate it serves heartbeats (``max_heartbeat_rate``),
        i.e. within about one heartbeat period of the cluster's size: well inside the grace
        the new leader gives every node (three periods)."""
        rate = self.max_heartbeat_rate
        if rate is None:
            return 0.0
        view = self.proposer.store.view()
        cached = self._spread
        if cached is None or cached[0] != view.index:  # every ping asks: counted once per index
            cached = self._spread = (view.index, round(len(view.list("node")) / rate, 2))
        return cached[1]

    async def _notify_watcher(self, conn, params: dict[str, Any]) -> None:
        try:
            await conn.notify(LEADER_PUSH, params)
            self.counters["leader_pushes"] += 1
        except RpcUnavailable:
            self._watchers.discard(conn)

    def has_session(self, node_id: str) -> bool:
        return self._sessions.for_node(node_id) is not None

    def session_features(self, node_id: str) -> frozenset[str]:
        """What the node's open session said it understands (empty without a session)."""
        session = self._sessions.for_node(node_id)
        return session.features if session is not None else frozenset()

    def session_count(self) -> int:
        return len(self._sessions)

    def node_state_counts(self) -> dict[str, int]:
        """Nodes by stored state, every state present (zeros included) for stable metrics."""
        view = self.proposer.store.view()
        return {str(s): view.count("node", state=s) for s in NodeState}

    def node_ready_count(self) -> int:
        return self.proposer.store.view().count("node", state=NodeState.READY)

    def node_down_count(self) -> int:
        return self.proposer.store.view().count("node", state=NodeState.DOWN)

    def metrics(self) -> dict[str, Any]:
        """Counters and gauges for /metrics (names without the exporter's prefix)."""
        transactions, nodes_written = self._write_totals(self._writer)
        return {
            **self.counters,
            "status_transactions": transactions,
            "status_nodes_written": nodes_written,
            "leader": self.running,
            "sessions": self.session_count(),
            "tracked_nodes": len(self._tracker),
            "heartbeat_period": self.heartbeat_period,
            "assignment_pushes": self.assignments.pushes,
            "assignment_full_pushes": self.assignments.full_pushes,
            "assignment_incremental_pushes": self.assignments.incremental_pushes,
            "netmap_pushes": self.netmap.pushes,
            "nodes": self.node_state_counts(),
        }


def _params(params: Any) -> Mapping[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise RpcError(INVALID_ARGUMENT, "params must be a map")
    return params


def _description(raw: Any) -> NodeDescription | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise RpcError(INVALID_ARGUMENT, "description must be a map")
    try:
        return NodeDescription.model_validate(raw)
    except ValidationError as e:
        raise RpcError(INVALID_ARGUMENT, f"invalid node description: {e}") from None
