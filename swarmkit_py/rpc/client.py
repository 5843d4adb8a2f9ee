"""The dialing side: opening a connection, and a client that keeps one for its calls."""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Callable
from typing import Any

from .connection import STREAM_LIMIT, Connection
from .errors import RpcUnavailable
from .framing import DEFAULT_MAX_FRAME
from .peer import PeerInfo
from .registry import HandlerRegistry

VerifyPeer = Callable[[PeerInfo], None]
"""Called once the TLS handshake is done and before anything is sent or dispatched; raises
(any exception, its message is kept) when the server is not who the caller must talk to."""


async def open_connection(
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    handlers: HandlerRegistry | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
    connect_timeout: float = 10.0,
    verify_peer: VerifyPeer | None = None,
) -> Connection:
    """Dial ``host:port``; every failure to get a working stream becomes :class:`RpcUnavailable`
    naming the address, so callers have one thing to catch and a message worth logging.

    ``handlers`` serve what the peer sends back on this connection (pushes, calls).
    ``verify_peer`` checks the server's verified certificate (its role, its node id): TLS only
    proves the cluster CA signed it, and the CA signs workers' certificates too.
    """
    try:
        async with asyncio.timeout(connect_timeout):  # not wait_for: see Connection.aclose
            reader, writer = await asyncio.open_connection(
                host,
                port,
                ssl=ssl,
                server_hostname=server_hostname if ssl is not None else None,
                limit=STREAM_LIMIT,
            )
    except TimeoutError:
        raise RpcUnavailable(
            f"cannot connect to {host}:{port}: no connection within {connect_timeout}s"
        ) from None
    except OSError as e:  # includes ssl.SSLError and ConnectionRefusedError
        raise RpcUnavailable(f"cannot connect to {host}:{port}: {e}") from e
    conn = Connection(reader, writer, handlers or HandlerRegistry(), max_frame=max_frame)
    if verify_peer is not None:
        # Synchronous, right after the constructor: the read loop has not run yet, so nothing
        # the server sent can have reached a handler.
        try:
            verify_peer(conn.peer)
        except Exception as e:
            conn.abort(f"server refused: {e}")
            raise RpcUnavailable(f"refusing the server at {host}:{port}: {e}") from None
    return conn


class RpcClient:
    """A caller of one remote address, connecting on first use and again after a loss.

    Calls in flight when the connection dies fail with :class:`RpcUnavailable`; they are not
    retried here, because only the caller knows whether its call is safe to repeat.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = 30.0,
        connect_timeout: float = 10.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        handlers: HandlerRegistry | None = None,
        verify_peer: VerifyPeer | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._connect_timeout = connect_timeout
        self._max_frame = max_frame
        self._verify_peer = verify_peer
        self.handlers = handlers or HandlerRegistry()
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def connection(self) -> Connection | None:
        conn = self._conn
        return conn if conn is not None and not conn.is_closed else None

    async def connect(self) -> Connection:
        if self._closed:
            raise RpcUnavailable(f"client for {self.host}:{self.port} is closed")
        conn = self.connection
        if conn is not None:
            return conn
        async with self._lock:
            conn = self.connection
            if conn is None:
                conn = await open_connection(
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self._server_hostname,
                    handlers=self.handlers,
                    max_frame=self._max_frame,
                    connect_timeout=self._connect_timeout,
                    verify_peer=self._verify_peer,
                )
                self._conn = conn
            return conn

    async def call(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Call ``method``; ``timeout=None`` means the client's default ``timeout``."""
        conn = await self.connect()
        return await conn.call(method, params, timeout=self.timeout if timeout is None else timeout)

    async def notify(self, method: str, params: Any = None) -> None:
        conn = await self.connect()
        await conn.notify(method, params)

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()

    def abort(self) -> None:
        """Close without waiting for the peer (see Connection.abort); calls in flight fail."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
