"""The listening side: accepts connections and serves the methods registered on it."""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl

from .connection import STREAM_LIMIT, Connection
from .framing import DEFAULT_MAX_FRAME
from .registry import HandlerRegistry, NotificationHandler, RequestHandler

log = logging.getLogger(__name__)


class RpcServer:
    """One listening socket for everything a manager serves (Raft, joins, dispatcher...).

    Handlers may be added before or after ``start()``, which is what lets several components
    (the Raft transport, the dispatcher, the CA) share port 2377 without knowing each other.
    With ``ssl`` set, whether a client certificate is required is the context's business
    (``verify_mode``); the certificate presented reaches handlers as ``PeerInfo.cert``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl: _ssl.SSLContext | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl
        self._max_frame = max_frame
        self._handshake_timeout = handshake_timeout
        self.handlers = HandlerRegistry()
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()

    def add_handler(self, method: str, handler: RequestHandler) -> None:
        self.handlers.add_handler(method, handler)

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

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("server already started")
        self._server = await asyncio.start_server(
            self._on_connect,
            self.host,
            self.port,
            ssl=self._ssl,
            limit=STREAM_LIMIT,
            ssl_handshake_timeout=self._handshake_timeout if self._ssl else None,
        )

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(reader, writer, self.handlers, max_frame=self._max_frame)
        self._connections.add(conn)
        conn.add_close_callback(lambda: self._connections.discard(conn))
        log.debug("accepted connection from %s", conn.peer.address_str)

    async def stop(self) -> None:
        """Stop listening and close every connection, cancelling handlers still running."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
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
