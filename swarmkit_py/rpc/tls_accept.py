"""The TLS side of accepting a connection on port 2377, lean until the peer has proved who it is.

`asyncio.start_server(ssl=...)` gives every accepted socket an `asyncio.sslproto.SSLProtocol`,
which allocates a 256 KiB read buffer in its constructor, before the first byte of the
handshake: measured with tracemalloc (bench/anon_conn_bench.py), that buffer was 96 % of the
Python memory an idle anonymous connection held (262 KB of 274 KB; about 0.27 MB of RSS with
OpenSSL's own allocations on top). And nothing limited how many connections could sit in
the handshake (up to the 10 s handshake timeout), where the connection caps of
`rpc.limits.ServerPolicy` do not apply yet because nobody knows who the peer is.

Here the listening socket is plain TCP, and each accepted transport is switched to a TLS
protocol by hand, the way `loop.start_tls()` does it (`transport.set_protocol`, then
`connection_made`), so that:

- the protocol is a subclass whose read buffer starts at :data:`PRE_AUTH_READ_BUFFER`
  (16 KiB: a TLS record's worth; the buffer only bounds how many raw bytes one socket read
  takes, so a small one costs reads, never correctness);
- once the handshake shows a client certificate signed by the cluster CA, the buffer may grow
  back to asyncio's 256 KiB (``max_size`` is what ``get_buffer`` grows to), so Raft streams
  between managers read as much per call as before; an anonymous peer (a joining node) keeps
  the small one for its whole short life;
- at most ``max_handshakes`` connections are in the handshake at once; beyond that a new one
  is dropped at accept, before any TLS state exists;
- failed and timed-out handshakes are counted (``on_event``) instead of vanishing into
  asyncio's debug log.

`asyncio.sslproto.SSLProtocol` is not in asyncio's `__all__`, but its constructor is what
`loop.start_tls` and every event loop's server path call; tests/unit/test_tls_accept.py pins
the behaviour this module relies on (buffer size before and after authentication), so a
Python release that changes it fails there rather than silently.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from asyncio import sslproto
from collections.abc import Callable

log = logging.getLogger(__name__)

PRE_AUTH_READ_BUFFER = 4 * 1024
AUTHENTICATED_READ_BUFFER = sslproto.SSLProtocol.max_size


class LeanSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a small read buffer until `authenticated()` is called."""

    max_size = PRE_AUTH_READ_BUFFER

    def authenticated(self) -> None:
        """Let the read buffer grow to asyncio's default on the next read."""
        self.max_size = AUTHENTICATED_READ_BUFFER

    @property
    def read_buffer_size(self) -> int:
        return len(self._ssl_buffer)


Connected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]
Event = Callable[[str], None]


class _Acceptor(asyncio.Protocol):
    """The plain-TCP protocol of one accepted socket: hands it to a LeanSSLProtocol at once."""

    def __init__(self, server: LeanTLSServer) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._server._accept(transport)

    def data_received(self, data: bytes) -> None:  # never: the TLS protocol took over
        raise AssertionError("data reached the plain acceptor")


class LeanTLSServer:
    """Accepts TLS connections (see the module docstring); `connected(reader, writer)` is called
    after each successful handshake, exactly as with `asyncio.start_server`."""

    def __init__(
        self,
        connected: Connected,
        ssl: _ssl.SSLContext,
        *,
        limit: int,
        handshake_timeout: float,
        max_handshakes: int,
        on_event: Event | None = None,
    ) -> None:
        self._connected = connected
        self._ssl = ssl
        self._limit = limit
        self._handshake_timeout = handshake_timeout
        self._max_handshakes = max_handshakes
        self._on_event = on_event or (lambda kind: None)
        self.handshaking = 0

    async def listen(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Acceptor(self), host, port)

    def _accept(self, transport: asyncio.BaseTransport) -> None:
        if self.handshaking >= self._max_handshakes:
            self._on_event("handshakes_over_capacity")
            transport.abort()
            return
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self._limit, loop=loop)
        app = asyncio.StreamReaderProtocol(reader, self._connected, loop=loop)
        waiter = loop.create_future()
        proto = LeanSSLProtocol(loop, app, self._ssl, waiter, server_side=True,
                                ssl_handshake_timeout=self._handshake_timeout)
        self.handshaking += 1
        waiter.add_done_callback(lambda fut: self._handshake_done(fut, proto))
        transport.set_protocol(proto)
        proto.connection_made(transport)

    def _handshake_done(self, fut: asyncio.Future, proto: LeanSSLProtocol) -> None:
        self.handshaking -= 1
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            sslobj = proto._extra.get("ssl_object")
            if sslobj is not None and sslobj.getpeercert(binary_form=True) is not None:
                proto.authenticated()
            return
        # The protocol already closed the transport. A peer that just hangs up (a port probe)
        # is not counted; a refused certificate, garbage instead of TLS, or a stalled
        # handshake is.
        if isinstance(exc, _ssl.SSLError):
            self._on_event("tls_handshake_failed")
        elif isinstance(exc, ConnectionAbortedError) and "taking longer" in str(exc):
            self._on_event("tls_handshake_timeout")
        log.debug("TLS handshake failed: %s", exc)
