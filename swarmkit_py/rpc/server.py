"""The listening side: accepts connections and serves the methods registered on it."""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections import Counter

from .connection import STREAM_LIMIT, Connection
from .framing import DEFAULT_MAX_FRAME
from .limits import ServerPolicy
from .registry import HandlerRegistry, NotificationHandler, RequestHandler
from .tls_accept import LeanTLSServer

log = logging.getLogger(__name__)


class RpcServer:
    """One listening socket for everything a manager serves (Raft, joins, dispatcher...).

    Handlers may be added before or after ``start()``, which is what lets several components
    (the Raft transport, the dispatcher, the CA) share port 2377 without knowing each other.
    With ``ssl`` set, whether a client certificate is required is the context's business
    (``verify_mode``); the certificate presented reaches handlers as ``PeerInfo.cert``.

    ``policy`` (``rpc.limits.ServerPolicy``) is what a server facing untrusted networks
    passes: per-peer decode limits, the methods open to peers without a certificate, caps on
    connections, idle time and lifetime of anonymous ones, and a last word on admission
    (revoked certificates). Without it every peer is trusted with ``max_frame`` (tests,
    loopback tools).

    With ``ssl``, connections are accepted by ``tls_accept.LeanTLSServer``: a small read
    buffer until the peer presents a certificate, and a cap on handshakes in progress.

    ``refused`` counts what the trust boundary turned away, by reason (see
    :data:`REFUSAL_REASONS`); pass a Counter to keep counting across servers (the agent's
    /metrics reads it).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl: _ssl.SSLContext | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        handshake_timeout: float = 10.0,
        policy: ServerPolicy | None = None,
        refused: Counter | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl
        self._max_frame = max_frame
        self._handshake_timeout = handshake_timeout
        self._policy = policy
        self.handlers = HandlerRegistry()
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._sweeper: asyncio.Task | None = None
        self.refused: Counter = refused if refused is not None else Counter()
        self._reported = Counter(self.refused)
        self._tls: LeanTLSServer | None = None

    def add_handler(self, method: str, handler: RequestHandler, *, inline: bool = False) -> None:
        self.handlers.add_handler(method, handler, inline=inline)

    def add_notification_handler(self, method: str, handler: NotificationHandler) -> None:
        self.handlers.add_notification_handler(method, handler)

    def remove_handler(self, method: str) -> None:
        self.handlers.remove(method)

    @property
    def bound_port(self) -> int:
        """The port actually bound, which differs from ``port`` when that was 0."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def connections(self) -> frozenset[Connection]:
        return frozenset(self._connections)

    def handshake_backlog(self) -> int:
        """Connections accepted whose TLS handshake has not finished (waiting for a slot or
        in progress): peers, known or not, that are trying to get in right now."""
        tls = self._tls
        return 0 if tls is None else tls.waiting + tls.handshaking

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("server already started")
        if self._ssl is not None:
            max_handshakes = self._policy.max_handshakes if self._policy is not None else 1 << 30
            max_active = self._policy.max_active_handshakes if self._policy is not None else 32
            max_waiting = self._policy.max_connections if self._policy is not None else 1 << 30
            self._tls = LeanTLSServer(self._on_connect, self._ssl, limit=STREAM_LIMIT,
                                      handshake_timeout=self._handshake_timeout,
                                      max_handshakes=max_handshakes, max_active=max_active,
                                      max_waiting=max_waiting,
                                      on_event=self._count)
            self._server = await self._tls.listen(self.host, self.port)
        else:
            self._server = await asyncio.start_server(self._on_connect, self.host, self.port, limit=STREAM_LIMIT)
        if self._policy is not None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(self._policy), name=f"rpc-sweep {self.host}:{self.port}"
            )

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        policy = self._policy
        conn = Connection(reader, writer, self.handlers, max_frame=self._max_frame, policy=policy,
                          on_refusal=self._count)
        if policy is not None:
            refusal = self._refusal(conn, policy)
            if refusal is not None:
                kind, reason = refusal
                self.refused[kind] += 1
                # Summarised by the sweeper: a flood must not become a flood of log lines.
                log.debug("refusing connection from %s: %s", conn.peer.address_str, reason)
                conn.abort(reason)
                return
        self._connections.add(conn)
        conn.add_close_callback(lambda: self._connections.discard(conn))
        log.debug("accepted connection from %s", conn.peer.address_str)

    def _count(self, kind: str) -> None:
        self.refused[kind] += 1

    def _refusal(self, conn: Connection, policy: ServerPolicy) -> tuple[str, str] | None:
        if len(self._connections) >= policy.max_connections:
            return "connections_over_capacity", f"already {len(self._connections)} connections open"
        if conn.is_anonymous:
            anonymous = [c for c in self._connections if c.is_anonymous]
            if len(anonymous) >= policy.max_anonymous:
                # Make room by closing the stranger that has been silent longest, if it has
                # been silent a while: parked sockets must not lock joining nodes out, while
                # one that is busy joining right now keeps its slot.
                victim = min(anonymous, key=lambda c: c.last_frame_at)
                if conn.opened_at - victim.last_frame_at < policy.anonymous_evict_after:
                    return (
                        "anonymous_over_capacity",
                        f"already {len(anonymous)} connections without a certificate open",
                    )
                self.refused["anonymous_evicted"] += 1
                victim.abort("evicted: too many connections without a certificate")
        elif policy.admit is not None:
            try:
                reason = policy.admit(conn.peer)
            except Exception as e:  # a broken check must not let everyone in
                log.exception("admission check failed for %s", conn.peer.address_str)
                reason = f"admission check failed: {e}"
            if reason is not None:
                return "revoked_certificate", reason
        return None

    async def _sweep(self, policy: ServerPolicy) -> None:
        """Close anonymous connections that sat idle, or lived, too long: a joining node needs
        a few round trips, a slow reader or a parked socket is only holding a slot."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(policy.sweep_interval)
            if self.refused != self._reported:
                delta = {k: v - self._reported[k] for k, v in self.refused.items() if v != self._reported[k]}
                self._reported = Counter(self.refused)
                log.warning("cluster port %s:%s closed or refused connections: %s", self.host, self.port, delta)
            now = loop.time()
            for conn in list(self._connections):
                if not conn.is_anonymous:
                    continue
                if now - conn.opened_at > policy.anonymous_lifetime:
                    self.refused["anonymous_lifetime"] += 1
                    conn.abort(f"open for more than {policy.anonymous_lifetime:.0f}s without a certificate")
                elif now - conn.last_frame_at > policy.anonymous_idle_timeout:
                    self.refused["anonymous_idle"] += 1
                    conn.abort(f"idle for more than {policy.anonymous_idle_timeout:.0f}s without a certificate")

    def close_where(self, predicate, reason: str) -> int:
        """Close every open connection whose peer matches ``predicate(peer)`` (a node whose
        rights were just revoked); returns how many were closed."""
        closed = 0
        for conn in list(self._connections):
            if not conn.is_closed and predicate(conn.peer):
                conn.close(reason)
                closed += 1
        return closed

    async def stop(self) -> None:
        """Stop listening and close every connection, cancelling handlers still running."""
        server, self._server = self._server, None
        if server is None:
            return
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
        server.close()
        if self._tls is not None:
            self._tls.close()
        await asyncio.gather(
            *(c.aclose("server stopping") for c in list(self._connections)),
            return_exceptions=True,
        )
        await server.wait_closed()

    async def __aenter__(self) -> RpcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
