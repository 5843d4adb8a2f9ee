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
- at most ``max_handshakes`` connections are in the handshake at once, and ``max_waiting``
  wait for one (a waiting connection is a socket with reading paused, no TLS state: after the
  leader died, a thousand re-opening workers wait their turn instead of 700 being refused in
  the first second); beyond that a new one is dropped at accept, before any TLS state exists;
- at most ``max_active`` handshakes are *computed* at once; the others wait with nothing read
  from them (their ClientHello stays in the kernel's buffer). A server-side mutual-TLS
  handshake costs 1-2 ms of CPU here (OpenSSL 3.0), and asyncio runs every callback that is
  ready in one turn before it looks at its timers again: when a thousand workers re-opened
  their sessions after a leader change, their handshake messages were readable all at once
  and the turn that answered them held a manager's loop for 0.7-3 s, past Raft's election
  timeout (issue 13, 1,000 simulated nodes: an election storm). A slot is given back when its
  handshake ends, or after ``slot_s`` (0.25 s) even if it has not: the handshake goes on with
  its own timeout, and by then it is waiting for its peer, not computing (16 slots held for up
  to 2 s gave a thousand workers on one overloaded process 10 handshakes a second, and they
  waited past the timeout); a peer that connects and stalls holds nothing for long. While more
  wait than there are slots (overload), the newest waiting connection goes first: the oldest
  have waited longest and their peers are the likeliest to have given up (a worker waits 2 s
  for a connection), so serving them first would spend every slot on handshakes nobody waits
  for; peers that hung up before their turn are skipped (POLLRDHUP, without reading), and a
  connection that waited longer than a handshake may take is closed unserved;
- failed and timed-out handshakes are counted (``on_event``) instead of vanishing into
  asyncio's debug log.

`asyncio.sslproto.SSLProtocol` is not in asyncio's `__all__`, but its constructor is what
`loop.start_tls` and every event loop's server path call; tests/unit/test_tls_accept.py pins
the behaviour this module relies on (buffer size before and after authentication), so a
Python release that changes it fails there rather than silently.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import select
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

    def data_received(self, data: bytes) -> None:  # never: reading is paused until TLS takes over
        raise AssertionError("data reached the plain acceptor")

    def eof_received(self) -> bool:  # the peer closed while waiting (or with reading paused)
        return False


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
        max_active: int = 32,
        max_waiting: int = 4096,
        slot_s: float = 0.25,
        on_event: Event | None = None,
    ) -> None:
        if max_active < 1 or slot_s <= 0:
            raise ValueError("max_active must be at least 1 and slot_s positive")
        self._connected = connected
        self._ssl = ssl
        self._limit = limit
        self._handshake_timeout = handshake_timeout
        self._max_handshakes = max_handshakes
        self._max_active = max_active
        self._max_waiting = max_waiting
        self._slot_s = slot_s
        self._on_event = on_event or (lambda kind: None)
        self.handshaking = 0
        """Handshakes started and not finished."""
        self.active = 0
        """Handshakes holding a slot (started less than ``slot_s`` ago and not finished)."""
        self._waiting: collections.deque[tuple[asyncio.Transport, float]] = collections.deque()
        self.stats = {"waited_max": 0, "abandoned": 0}
        """The most connections seen waiting for a slot; waiting peers that hung up first."""

    async def listen(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Acceptor(self), host, port)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        """Drop the connections still waiting for a slot (the server is stopping)."""
        while self._waiting:
            self._waiting.popleft()[0].abort()

    def _accept(self, transport: asyncio.Transport) -> None:
        if self.handshaking >= self._max_handshakes or len(self._waiting) >= self._max_waiting:
            self._on_event("handshakes_over_capacity")
            transport.abort()
            return
        transport.pause_reading()
        self._waiting.append((transport, asyncio.get_running_loop().time()))
        self.stats["waited_max"] = max(self.stats["waited_max"], len(self._waiting))
        self._start_waiting()

    def _start_waiting(self) -> None:
        loop = asyncio.get_running_loop()
        waiting = self._waiting
        while waiting and loop.time() - waiting[0][1] > self._handshake_timeout:
            self._on_event("tls_handshake_timeout")
            waiting.popleft()[0].abort()
        while waiting and self.active < self._max_active:
            transport, _ = waiting.pop() if len(waiting) > self._max_active else waiting.popleft()
            if transport.is_closing():
                continue
            if _peer_hung_up(transport):
                self.stats["abandoned"] += 1  # not a refusal: like a port probe, not counted
                transport.abort()
                continue
            self._start(transport)

    def _start(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self._limit, loop=loop)
        app = asyncio.StreamReaderProtocol(reader, self._connected, loop=loop)
        waiter = loop.create_future()
        proto = LeanSSLProtocol(loop, app, self._ssl, waiter, server_side=True,
                                ssl_handshake_timeout=self._handshake_timeout)
        self.handshaking += 1
        self.active += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.active -= 1
                self._start_waiting()

        give_back = loop.call_later(self._slot_s, release)

        def done(fut: asyncio.Future) -> None:
            give_back.cancel()
            self._handshake_done(fut, proto)
            release()

        waiter.add_done_callback(done)
        transport.set_protocol(proto)
        proto.connection_made(transport)
        transport.resume_reading()

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


def _peer_hung_up(transport: asyncio.Transport) -> bool:
    """The peer closed its side before we read anything (a TLS client never half-closes during
    the handshake): Linux reports that with POLLRDHUP even while its ClientHello is still
    unread in the socket buffer, so the handshake need not be computed to find out."""
    sock = transport.get_extra_info("socket")
    rdhup = getattr(select, "POLLRDHUP", 0)
    if sock is None or not rdhup:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), rdhup)
    return any(ev & (rdhup | select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))
