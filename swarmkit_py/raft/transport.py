"""Carries Raft messages between members over the cluster RPC connection.

Raft tolerates lost, duplicated and reordered messages but not a member that stalls, so
sending never waits: each peer has its own bounded queue, its own outbound connection and its
own writer task. A slow or dead peer fills (then overflows) only its own queue; messages to
the others keep flowing. Overflow drops and counts rather than blocks, and the leader's
retries recover what was lost.

Messages travel as one-way RPC notifications (method ``"raft.msg"``), so the transport can
listen on its own ``RpcServer`` or just register on the manager's, sharing port 2377 with the
dispatcher and the join service. A snapshot is the exception: it goes as a call
(``"raft.snap"``) whose answer means the follower's transport received it whole and handed it
to its member, and only then is it reported delivered (etcd's ReportSnapshot); a failed or
unanswered call reports failure, so the leader retries instead of waiting forever.

The transport tells its member about losses, as etcd's rafthttp does: messages dropped for a
peer (connection down, queue full) report the peer unreachable, so a leader stops pipelining
appends into the void and probes instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as _ssl
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..rpc import (
    DEFAULT_MAX_FRAME,
    Connection,
    PeerInfo,
    RpcError,
    RpcServer,
    RpcUnavailable,
    open_connection,
)
from ..rpc.framing import notification_framer
from .codec import MessagePacker, message_from_tuple, message_to_tuple
from .core.order import URGENT
from .types import Message, MsgType

log = logging.getLogger(__name__)

RAFT_METHOD = "raft.msg"
SNAP_METHOD = "raft.snap"
PROBE_METHOD = "raft.probe"
"""A no-op notification: a segment for the peer's kernel to acknowledge (see ``probe``)."""
TERM_METHOD = "raft.term"
"""A call answered with the member's current term (see ``serve_lane``, raft/readlane.py)."""
COMMIT_METHOD = "raft.commit"
"""A call answered by a leader that has committed an entry of its term with ``[term, read
index]``, by any other member with None (see ``serve_lane``, raft/readlane.py)."""


def _ignore(_peer: PeerInfo, _params: Any) -> None:
    return None


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> ``(host, port)``."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"peer address must be host:port, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class _Peer:
    """Everything about one remote member: where it is, what waits for it, how it went."""

    __slots__ = (
        "node_id",
        "host",
        "port",
        "queue",
        "wake",
        "conn",
        "task",
        "sent",
        "dropped",
        "connect_failures",
        "last_error",
        "overflowing",
    )

    def __init__(self, node_id: int, host: str, port: int) -> None:
        self.node_id = node_id
        self.host = host
        self.port = port
        self.queue: list[Message] = []
        self.wake = asyncio.Event()
        self.conn: Connection | None = None
        self.task: asyncio.Task | None = None
        self.sent = 0
        self.dropped = 0
        self.connect_failures = 0
        self.last_error = ""
        self.overflowing = False  # unreachable already reported for this run of overflows

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Transport:
    """Raft messages in and out for member ``node_id``.

    ``on_message`` is called synchronously on the event loop for every message addressed to
    this member, in the order each peer sent them; it should only queue them for the driver
    (the driver steps the read path's messages at once: `RaftNode._step_now`).
    Pass ``rpc_server`` to share an existing server (its owner starts and stops it; ``host``,
    ``port`` and ``server_ssl`` are then unused), or leave it ``None`` to listen on
    ``host:port`` with ``server_ssl``. Outbound connections use ``client_ssl``.

    ``verify_server(node_id, peer)`` checks every outbound connection once its TLS handshake is
    done and before any message goes out; it raises to refuse the server (the control plane
    checks that it is a manager, and the manager it expects for that member: Raft appends and
    snapshots carry the whole store, CA key included).

    ``authorize(peer) -> bool`` decides, once per inbound connection, whether its sender may
    speak Raft at all. On a shared port a worker's certificate (same CA) passes TLS, so the
    control plane passes a check of the manager role here; refused messages are counted.

    ``on_unreachable(node_id)`` is called when messages to a peer were dropped, and
    ``on_snapshot_status(node_id, ok)`` once per snapshot sent, when the follower acknowledged
    it (``ok``) or the send failed; like ``on_message`` they should only queue the news.
    """

    def __init__(
        self,
        node_id: int,
        host: str,
        port: int,
        on_message: Callable[[Message], None],
        server_ssl: _ssl.SSLContext | None = None,
        client_ssl: _ssl.SSLContext | None = None,
        rpc_server: RpcServer | None = None,
        *,
        queue_size: int = 4096,
        max_frame: int = DEFAULT_MAX_FRAME,
        backoff_min: float = 0.05,
        backoff_max: float = 1.0,
        connect_timeout: float = 2.0,
        server_hostname: str | None = None,
        authorize: Callable[[PeerInfo], bool] | None = None,
        rng: random.Random | None = None,
        on_unreachable: Callable[[int], None] | None = None,
        on_snapshot_status: Callable[[int, bool], None] | None = None,
        snapshot_timeout: float = 60.0,
        verify_server: Callable[[int, PeerInfo], None] | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if not 0 < backoff_min <= backoff_max:
            raise ValueError("need 0 < backoff_min <= backoff_max")
        self.node_id = node_id
        self._on_message = on_message
        self._on_unreachable = on_unreachable
        self._on_snapshot_status = on_snapshot_status
        self._snapshot_timeout = snapshot_timeout
        self._snapshot_sends: set[asyncio.Task] = set()
        self._packer = MessagePacker()  # shared by the peers' senders: entries packed once
        self._frame = notification_framer(RAFT_METHOD, max_frame)
        self._client_ssl = client_ssl
        self._owns_server = rpc_server is None
        self._server = rpc_server or RpcServer(host, port, ssl=server_ssl, max_frame=max_frame)
        self._queue_size = queue_size
        self._max_frame = max_frame
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._connect_timeout = connect_timeout
        self._server_hostname = server_hostname
        self._rng = rng or random.Random()
        self._authorize = authorize
        self._verify_server = verify_server
        self._verdicts: weakref.WeakKeyDictionary[Connection, bool] = weakref.WeakKeyDictionary()
        self._peers: dict[int, _Peer] = {}
        self._retiring: set[asyncio.Task] = set()
        self._running = False
        self._stopped = False
        self._term: Callable[[], int | None] | None = None
        self._commit: Callable[[], list[int] | None] | None = None
        self.dropped_unknown_peer = 0
        self.dropped_inbound = 0
        self.dropped_unauthorized = 0
        self.received = 0

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def bound_port(self) -> int:
        return self._server.bound_port

    async def start(self) -> None:
        if self._running or self._stopped:
            raise RuntimeError("a Transport starts once")
        self._server.add_notification_handler(RAFT_METHOD, self._on_raft_msg)
        self._server.add_handler(SNAP_METHOD, self._on_raft_snap)
        self._server.add_notification_handler(PROBE_METHOD, _ignore)
        self._server.add_handler(TERM_METHOD, self._on_term, inline=True)
        self._server.add_handler(COMMIT_METHOD, self._on_commit, inline=True)
        if self._owns_server:
            try:
                await self._server.start()
            except BaseException:
                self._remove_handlers()
                raise
        self._running = True
        for peer in self._peers.values():
            self._spawn(peer)

    async def stop(self) -> None:
        """Stop sending and receiving; queued messages are discarded."""
        if self._stopped:
            return
        self._stopped = True
        was_running, self._running = self._running, False
        tasks = [p.task for p in self._peers.values() if p.task is not None]
        tasks += self._retiring
        tasks += self._snapshot_sends
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for peer in self._peers.values():
            peer.queue.clear()
        if was_running:
            self._remove_handlers()
            if self._owns_server:
                await self._server.stop()

    def _remove_handlers(self) -> None:
        for method in (RAFT_METHOD, SNAP_METHOD, PROBE_METHOD, TERM_METHOD, COMMIT_METHOD):
            self._server.remove_handler(method)

    # -- membership ----------------------------------------------------------------------------

    def add_peer(self, node_id: int, address: str) -> None:
        """Start talking to ``node_id`` at ``"host:port"``; a new address replaces the old."""
        if node_id == self.node_id:
            raise ValueError(f"node {node_id} is this member; it needs no transport peer")
        host, port = parse_address(address)
        old = self._peers.get(node_id)
        if old is not None:
            if (old.host, old.port) == (host, port):
                return
            self.remove_peer(node_id)
        peer = _Peer(node_id, host, port)
        self._peers[node_id] = peer
        if self._running:
            self._spawn(peer)

    def remove_peer(self, node_id: int) -> None:
        peer = self._peers.pop(node_id, None)
        if peer is None:
            return
        self._lost(node_id, peer.queue)
        peer.queue.clear()
        if peer.task is not None:
            peer.task.cancel()
            self._retiring.add(peer.task)
            peer.task.add_done_callback(self._retiring.discard)

    def is_reachable(self, node_id: int) -> bool:
        """Whether a connection to ``node_id`` is up right now (what a leader needs to decide
        between pipelining appends and probing)."""
        peer = self._peers.get(node_id)
        return peer is not None and peer.conn is not None and not peer.conn.is_closed

    def peers(self) -> dict[int, str]:
        return {nid: p.address for nid, p in self._peers.items()}

    # -- the read lane (raft/readlane.py) -----------------------------------------------------

    def serve_lane(self, term: Callable[[], int | None], commit: Callable[[], list[int] | None]) -> None:
        """Answer other members' read lanes: ``TERM_METHOD`` calls with ``term()``, this
        member's current term (None while it is not known), ``COMMIT_METHOD`` calls with
        ``commit()``, ``[term, read index]`` while it leads and has committed in its term."""
        self._term = term
        self._commit = commit

    async def open_lane(self, node_id: int, address: str, guard: Any = None) -> Connection:
        """A connection of the caller's own to member ``node_id`` at ``address``, on the
        caller's event loop (any thread's), made and checked as this transport makes and
        checks its own (TLS, ``verify_server``, run under the lock ``guard`` when given);
        RpcUnavailable when it cannot be had."""
        host, port = parse_address(address)
        check = self._server_check(node_id)
        if check is not None and guard is not None:
            unguarded = check

            def check(server: PeerInfo) -> None:
                with guard:
                    unguarded(server)
        return await self._dial(host, port, check)

    async def _dial(self, host: str, port: int, check: Callable[[PeerInfo], None] | None) -> Connection:
        """A connection to a member, made as every one of this transport's is (TLS, frame
        limit, connect timeout), its server checked by `check`."""
        return await open_connection(
            host,
            port,
            ssl=self._client_ssl,
            server_hostname=self._server_hostname,
            max_frame=self._max_frame,
            connect_timeout=self._connect_timeout,
            verify_peer=check,
        )

    def _on_term(self, peer: PeerInfo, _params: Any) -> int | None:
        """This member's term, for another member's read lane; None (no answer that counts)
        for a sender that may not speak Raft, or before a member serves its term."""
        return self._lane_answer(peer, self._term)

    def _on_commit(self, peer: PeerInfo, _params: Any) -> list[int] | None:
        """This leader's term and read index, for a follower's read lane; None (no answer
        that counts) for a sender that may not speak Raft, or from a member that does not
        lead (or has not committed in its term yet)."""
        return self._lane_answer(peer, self._commit)

    def _lane_answer(self, peer: PeerInfo, answer: Callable[[], Any] | None) -> Any:
        if self._authorize is not None and not self._authorized(peer):
            self.dropped_unauthorized += 1
            return None
        return answer() if answer is not None else None

    # -- kernel evidence (rpc/tcpinfo.py) ---------------------------------------------------

    def probe(self, node_id: int) -> bool:
        """Send a no-op on the connection to ``node_id``, so that a peer whose process is
        silent still has a segment its kernel must acknowledge. False without a connection."""
        peer = self._peers.get(node_id)
        conn = peer.conn if peer is not None else None
        if conn is None or conn.is_closed:
            return False
        try:
            conn.notify_nowait(PROBE_METHOD)
        except RpcUnavailable:
            return False
        return True

    def peer_silent_for(self, node_id: int, seconds: float) -> bool:
        """The connection to ``node_id`` has data in flight, retransmitted, with no ACK from
        the peer's kernel for ``seconds``: its host is down or cut off, not merely busy."""
        peer = self._peers.get(node_id)
        conn = peer.conn if peer is not None else None
        info = conn.tcp_info() if conn is not None else None
        return info is not None and info.peer_silent_for(seconds)

    def stats(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "dropped_inbound": self.dropped_inbound,
            "dropped_unauthorized": self.dropped_unauthorized,
            "dropped_unknown_peer": self.dropped_unknown_peer,
            "peers": {
                nid: {
                    "address": p.address,
                    "connected": self.is_reachable(nid),
                    "queued": len(p.queue),
                    "sent": p.sent,
                    "dropped": p.dropped,
                    "connect_failures": p.connect_failures,
                    "last_error": p.last_error,
                }
                for nid, p in self._peers.items()
            },
        }

    # -- sending -------------------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        """Queue ``msg`` for ``msg.to``; never blocks. Drops (and counts) when the peer is
        unknown, its queue is full, or the transport is stopped."""
        peer = self._peers.get(msg.to)
        if peer is None:
            self.dropped_unknown_peer += 1
            self._lost(msg.to, (msg,))
            return
        if len(peer.queue) >= self._queue_size or self._stopped:
            peer.dropped += 1
            if not peer.overflowing or msg.type == MsgType.SNAP:
                peer.overflowing = True
                self._lost(msg.to, (msg,))
            return
        if msg.type in URGENT and not peer.queue and self._write_now(peer, msg):
            return
        peer.queue.append(msg)
        peer.wake.set()

    def _write_now(self, peer: _Peer, msg: Message) -> bool:
        """Write a read-path message (core.order.URGENT: heartbeats, their acks, reads) to the
        peer's open connection at once, instead of waking its sender task, whose turn on a
        busy event loop can come 100 ms later (issue 13: a read's barrier is two of these
        and two receives). Only with nothing queued for the peer, so the stream's order is
        kept; False leaves the message to the queue (no connection, or it just closed)."""
        conn = peer.conn
        if conn is None or conn.is_closed:
            return False
        data = self._framed(peer, msg)
        if data is None:
            return True
        try:
            conn.write_frames(data)
        except RpcUnavailable:
            return False
        peer.sent += 1
        return True

    def _framed(self, peer: _Peer, msg: Message) -> bytes | None:
        """`msg` packed and framed; None (dropped and counted) if it cannot be."""
        try:
            return self._frame(self._packer.pack(msg))
        except Exception as e:
            peer.dropped += 1
            log.warning("dropping %s to node %d: %s", msg.type.name, peer.node_id, e)
            return None

    def _lost(self, node_id: int, msgs) -> None:
        """Report dropped messages to the member: the peer is unreachable, and a dropped
        snapshot failed."""
        if not msgs or self._stopped:
            return
        if self._on_snapshot_status is not None:
            for m in msgs:
                if m.type == MsgType.SNAP:
                    self._on_snapshot_status(node_id, False)
        if self._on_unreachable is not None:
            self._on_unreachable(node_id)

    def _spawn(self, peer: _Peer) -> None:
        peer.task = asyncio.get_running_loop().create_task(
            self._run_peer(peer), name=f"raft-send {self.node_id}->{peer.node_id}"
        )

    async def _run_peer(self, peer: _Peer) -> None:
        """Connect, pump, and on any failure back off and reconnect, until cancelled.

        A connection that dies soon after it opened (a TLS rejection shows up only after the
        handshake under TLS 1.3) counts as a failure, so a peer that keeps refusing us is not
        redialled in a tight loop. The loop condition backs up cancellation: a stopped
        transport or a removed peer must never leave a sender dialling on.
        """
        delay = self._backoff_min
        while self._running and self._peers.get(peer.node_id) is peer:
            try:
                conn = await self._dial(peer.host, peer.port, self._server_check(peer.node_id))
            except RpcUnavailable as e:
                failed_for = e.message
            else:
                opened = time.monotonic()
                peer.conn = conn
                conn.add_close_callback(peer.wake.set)
                try:
                    await self._pump(peer, conn)
                except RpcUnavailable:
                    pass
                finally:
                    peer.conn = None
                    await conn.aclose()
                failed_for = f"connection to {peer.address} lost: {conn.close_reason}"
                if time.monotonic() - opened > self._backoff_max:
                    delay = self._backoff_min
                    peer.last_error = failed_for
                    continue
            # Stale heartbeats and appends are worse than none once the peer is back: drop.
            peer.connect_failures += 1
            peer.last_error = failed_for
            peer.dropped += len(peer.queue)
            self._lost(peer.node_id, peer.queue)
            peer.queue.clear()
            await asyncio.sleep(delay * (0.5 + 0.5 * self._rng.random()))
            delay = min(delay * 2, self._backoff_max)

    def _server_check(self, node_id: int) -> Callable[[PeerInfo], None] | None:
        verify = self._verify_server
        if verify is None:
            return None
        return lambda server: verify(node_id, server)

    async def _pump(self, peer: _Peer, conn: Connection) -> None:
        """Everything queued since the last wake-up goes out in one write, then one drain."""
        wake = peer.wake
        framed = self._framed
        while True:
            if not peer.queue:
                wake.clear()
                await wake.wait()
            if conn.is_closed:
                return
            batch, peer.queue = peer.queue, []
            peer.overflowing = False
            frames = []
            for msg in batch:
                if msg.type == MsgType.SNAP:
                    self._spawn_snapshot_send(peer, conn, msg)
                    continue
                data = framed(peer, msg)
                if data is not None:
                    frames.append(data)
            if frames:
                conn.write_frames(b"".join(frames))
                peer.sent += len(frames)
                await conn.drain()

    def _spawn_snapshot_send(self, peer: _Peer, conn: Connection, msg: Message) -> None:
        """A snapshot may be megabytes: it goes in its own task, so heartbeats to the same
        peer and everything to the others keep flowing while it is on the wire."""
        task = asyncio.get_running_loop().create_task(
            self._send_snapshot(peer, conn, msg), name=f"raft-snap {self.node_id}->{peer.node_id}"
        )
        self._snapshot_sends.add(task)
        task.add_done_callback(self._snapshot_sends.discard)

    async def _send_snapshot(self, peer: _Peer, conn: Connection, msg: Message) -> None:
        ok = False
        try:
            ok = await conn.call(SNAP_METHOD, message_to_tuple(msg), timeout=self._snapshot_timeout) is True
            if ok:
                peer.sent += 1
            else:
                peer.last_error = f"snapshot at {msg.snapshot.meta.index} refused by node {peer.node_id}"
        except RpcError as e:
            peer.last_error = f"snapshot at {msg.snapshot.meta.index}: {e.message}"
            log.warning("snapshot to node %d failed: %s", peer.node_id, e.message)
        finally:
            if not ok:
                peer.dropped += 1
            if self._on_snapshot_status is not None and not self._stopped:
                self._on_snapshot_status(peer.node_id, ok)

    # -- receiving -----------------------------------------------------------------------------

    def _on_raft_msg(self, peer: PeerInfo, params: Any) -> None:
        # returns None: the connection then skips its awaitable check for every message
        self._deliver(peer, params)

    def _on_raft_snap(self, peer: PeerInfo, params: Any) -> bool:
        """The answer to a snapshot call is its acknowledgement: True once the member has it."""
        return self._deliver(peer, params)

    def _deliver(self, peer: PeerInfo, params: Any) -> bool:
        """Hand one message to the member; False when it was refused or undecodable."""
        if self._authorize is not None and not self._authorized(peer):
            self.dropped_unauthorized += 1
            return False
        try:
            msg = message_from_tuple(params)
        except Exception as e:
            self.dropped_inbound += 1
            log.warning("undecodable raft message from %s: %s", peer.address_str, e)
            return False
        if msg.to != self.node_id:
            # A peer with a stale view of who lives at this address (a replaced node).
            self.dropped_inbound += 1
            log.debug("raft message for node %d arrived at node %d", msg.to, self.node_id)
            return False
        self.received += 1
        self._on_message(msg)
        return True

    def _authorized(self, peer: PeerInfo) -> bool:
        """The verdict is cached per connection: a certificate cannot change mid-connection,
        and parsing it for every heartbeat would cost more than the heartbeat."""
        verdict = self._verdicts.get(peer.connection)
        if verdict is None:
            try:
                verdict = bool(self._authorize(peer))
            except Exception:
                log.exception("raft authorization check failed for %s", peer.address_str)
                verdict = False
            self._verdicts[peer.connection] = verdict
            if not verdict:
                log.warning("refusing raft messages from %s: not authorized", peer.address_str)
        return verdict
