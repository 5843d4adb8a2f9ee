"""One framed, multiplexed connection; the same object on the client and the server side.

Both ends can call, answer and notify: a worker calls the dispatcher, and the dispatcher
pushes assignments back down the same connection. Calls carry a request id, so any number of
them share the connection and their answers may come back in any order.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import (
    INTERNAL,
    UNKNOWN_METHOD,
    FrameTooLarge,
    ProtocolError,
    RpcError,
    RpcTimeout,
    RpcUnavailable,
    error_from_wire,
)
from .framing import (
    DEFAULT_MAX_FRAME,
    NOTIFY,
    REQUEST,
    RESPONSE,
    FrameDecoder,
    pack_frame,
    unpack_body,
)
from .limits import DecodeLimits, ServerPolicy, trusted_limits
from .peer import PeerInfo
from .registry import HandlerRegistry
from .tcpinfo import TcpInfo, tcp_info

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
# StreamReader pauses the socket when it buffers twice this; the asyncio default (64 KiB)
# throttles a busy Raft stream for no benefit since we drain the buffer on every read.
STREAM_LIMIT = 1024 * 1024
CLOSE_WAIT = 2.0


class Connection:
    """A live stream to one peer. Create it only from inside the event loop; it starts reading
    immediately. Once closed it stays closed: reconnecting means a new ``Connection``.

    ``max_frame`` bounds what we send, and without a ``policy`` what we accept too. A server
    passes its ``policy`` (``rpc.limits.ServerPolicy``): the limits on what we accept are then
    chosen from the peer's certificate, and a peer without one may call only the policy's
    anonymous methods; anything else closes the connection unanswered.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handlers: HandlerRegistry,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        policy: ServerPolicy | None = None,
        on_refusal: Callable[[str], None] | None = None,
    ) -> None:
        self._reader = reader
        self._on_refusal = on_refusal
        self._writer = writer
        self._handlers = handlers
        self._max_frame = max_frame
        self._inflight_free = asyncio.Event()
        self._inflight_free.set()
        loop = self._loop = asyncio.get_running_loop()
        self.opened_at = loop.time()
        self.last_frame_at = self.opened_at
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._inline_count = 0  # inline requests (see _serve_inline) not answered yet
        self._outbox: list[bytes] = []  # see _queue_frame
        self._close_callbacks: list[Callable[[], None]] = []
        self._closed = False
        self._close_reason = ""
        self._closed_event = asyncio.Event()
        peername = writer.get_extra_info("peername")
        address = (str(peername[0]), int(peername[1])) if peername else None
        ssl_object = writer.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        decoded = ssl_object.getpeercert() if cert is not None else None
        self.peer = PeerInfo(address, cert, self, peercert=decoded or None)
        self._limits: DecodeLimits = trusted_limits(max_frame)
        self._allowed: frozenset[str] | None = None
        self._counted_codes = policy.counted_codes if policy is not None else {}
        if policy is not None:
            self._limits = policy.limits_for(self.peer)
            if cert is None:
                self._allowed = policy.anonymous_methods
        self._unpack_limits = self._limits.unpack_kwargs()
        self._decoder = FrameDecoder(self._limits.max_frame)
        # The read loop waits in read() with nothing buffered: frames may then be handled
        # straight from the socket's callback (`_feed`).
        self._parked = False
        self._backlog: asyncio.Task | None = None  # frames `_feed` left behind an async handler
        self._feed_buffered = reader.feed_data
        reader.feed_data = self._feed  # type: ignore[method-assign]
        self._read_task = loop.create_task(
            self._read_loop(), name=f"rpc-read {self.peer.address_str}"
        )

    # -- state -------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def is_anonymous(self) -> bool:
        """The peer presented no certificate."""
        return self.peer.cert is None

    @property
    def close_reason(self) -> str:
        return self._close_reason

    def tcp_info(self) -> TcpInfo | None:
        """The kernel's view of this connection (rpc/tcpinfo.py); None when unavailable."""
        if self._closed:
            return None
        return tcp_info(self._writer.get_extra_info("socket"))

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the connection is gone (at once if it already is).

        A callback rather than only an awaitable so that a sender parked on its own wake-up
        event learns of the loss without a task per connection to watch it.
        """
        if self._closed:
            asyncio.get_running_loop().call_soon(callback)
        else:
            self._close_callbacks.append(callback)

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    def close(self, reason: str = "closed locally") -> None:
        self._shutdown(reason)

    def abort(self, reason: str = "aborted locally") -> None:
        """Close without the TLS goodbye: for peers we are throwing out, or believed dead (a
        host that lost power answers nothing). A graceful close waits (up to 30 s) for a peer
        that may never read, holding the connection's buffers."""
        self._shutdown(reason)
        try:
            self._writer.transport.abort()
        except Exception:  # already gone
            log.debug("error aborting %s", self.peer.address_str, exc_info=True)

    async def aclose(self, reason: str = "closed locally") -> None:
        """Close and wait until the socket and the reader task are really gone, so a test or
        a stopping server leaves no task or socket behind."""
        self._shutdown(reason)
        if self._read_task is not asyncio.current_task():
            await asyncio.gather(self._read_task, return_exceptions=True)
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # lands as the inner await completes, and a sender being stopped would live on.
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                await self._writer.wait_closed()
        except TimeoutError:
            # A peer that stopped reading keeps our unsent bytes, and with them the socket.
            self._writer.transport.abort()
        except OSError:
            pass
        except Exception:  # ssl may raise odd errors on a torn-down socket
            log.debug("error while closing %s", self.peer.address_str, exc_info=True)

    # -- sending -----------------------------------------------------------------------------

    async def call(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Send a request and wait for its answer; raises the peer's error as :class:`RpcError`.

        :class:`FrameTooLarge` is raised before anything is sent, leaving the connection usable.
        """
        self._check_open()
        rid = next(self._ids)
        frame = pack_frame((REQUEST, rid, method, params), self._max_frame)
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(frame)
                await self.drain()
                return await fut
        except RpcError:
            raise
        except TimeoutError:
            raise RpcTimeout(
                f"{method} to {self.peer.address_str}: no answer within {timeout}s"
            ) from None
        finally:
            self._pending.pop(rid, None)

    def call_nowait(self, method: str, params: Any = None) -> asyncio.Future:
        """Send a request and return the future of its answer at once: no timer, no wait for
        socket space. For a client that pipelines many calls and bounds them itself; the
        future fails with :class:`RpcUnavailable` if the connection is lost."""
        self._check_open()
        rid = next(self._ids)
        frame = pack_frame((REQUEST, rid, method, params), self._max_frame)
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self._queue_frame(frame)
        return fut

    def notify_nowait(self, method: str, params: Any = None) -> None:
        """Queue a one-way message on the socket without waiting for buffer space."""
        self._check_open()
        self._writer.write(pack_frame((NOTIFY, method, params), self._max_frame))

    async def notify(self, method: str, params: Any = None) -> None:
        self.notify_nowait(method, params)
        await self.drain()

    def write_frames(self, data: bytes) -> None:
        """Write already framed bytes (many frames at once), for senders that batch.

        One ``write`` per batch instead of per frame is what lets the Raft transport reach
        tens of thousands of messages per second.
        """
        self._check_open()
        self._writer.write(data)

    async def drain(self) -> None:
        """Wait until the socket buffer is below its high-water mark (TCP back-pressure)."""
        self._check_open()
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            self._shutdown(f"{type(e).__name__}: {e}")
            raise RpcUnavailable(f"connection to {self.peer.address_str} lost: {e}") from e

    def _check_open(self) -> None:
        if self._closed:
            raise RpcUnavailable(
                f"connection to {self.peer.address_str} is closed: {self._close_reason}"
            )

    # -- receiving ---------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """The socket's bytes, as the stream's protocol hands them over. While the read loop
        waits with nothing buffered, their frames are handled here and now, not at the read
        task's next turn of the event loop, which on a busy manager comes after everything
        else it has ready (issue 13: a Raft read's heartbeats and acks each paid one). Else,
        and from an async notification handler on (its frames wait for it, in order), the
        bytes go to the reader's buffer and the read loop takes them as before."""
        if not (self._parked and data and not self._closed and self._inflight_free.is_set()):
            self._parked = False
            self._feed_buffered(data)
            return
        loop = self._loop
        try:
            bodies = self._decoder.feed(data)
            self.last_frame_at = loop.time()
            for i, body in enumerate(bodies):
                pending = self._on_frame(body)
                if pending is not None:
                    self._parked = False
                    self._backlog = loop.create_task(
                        self._handle_backlog(bodies[i + 1:], pending),
                        name=f"rpc-frames {self.peer.address_str}")
                    return
        except (FrameTooLarge, ProtocolError) as e:
            self._shutdown(self._read_refused(e))
        except Exception as e:  # a bug here must not leave the connection half-read
            log.exception("closing connection to %s: handling its frames failed", self.peer.address_str)
            self._shutdown(f"{type(e).__name__}: {e}")

    async def _handle_backlog(self, bodies: list[bytearray], pending: Awaitable[Any]) -> None:
        try:
            await self._handle_frames(bodies, pending)
        except (FrameTooLarge, ProtocolError) as e:
            self._shutdown(self._read_refused(e))

    async def _handle_frames(self, bodies: list[bytearray], pending: Awaitable[Any] | None = None) -> None:
        """Frames in order, each async notification handler awaited before the next frame."""
        if pending is not None:
            await self._await_notification(pending)
        loop = self._loop
        for body in bodies:
            self.last_frame_at = loop.time()
            pending = self._on_frame(body)
            if pending is not None:
                await self._await_notification(pending)

    def _read_refused(self, e: FrameTooLarge | ProtocolError) -> str:
        """Count and log a frame that closes the connection; the reason to close it with."""
        self._refused(e.kind if isinstance(e, _Refused) else "frame_too_large" if isinstance(e, FrameTooLarge)
                      else "bad_frame")
        log.warning("closing connection to %s: %s", self.peer.address_str, e)
        return str(e)

    async def _read_loop(self) -> None:
        read = self._reader.read
        chunk = min(READ_CHUNK, self._limits.max_frame + 4)
        inflight_free = self._inflight_free
        reason = "closed by peer"
        try:
            while True:
                if not inflight_free.is_set():
                    await inflight_free.wait()  # enough requests running: let TCP push back
                self._parked = True
                data = await read(chunk)
                self._parked = False
                if self._backlog is not None:  # what `_feed` handed over comes first
                    backlog, self._backlog = self._backlog, None
                    await backlog
                if not data:
                    break
                await self._handle_frames(self._decoder.feed(data))
        except (FrameTooLarge, ProtocolError) as e:
            reason = self._read_refused(e)
        except asyncio.CancelledError:
            reason = self._close_reason or "cancelled"
            raise
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as e:
            reason = f"{type(e).__name__}: {e}"
        finally:
            self._shutdown(reason)

    def _on_frame(self, body: bytearray) -> Awaitable[Any] | None:
        """Dispatch one frame; returns the awaitable of an async notification handler so the
        read loop can run it in order, or None when nothing is left to wait for."""
        try:
            frame = unpack_body(body, **self._unpack_limits)
            kind = frame[0]
        except Exception as e:
            # msgpack says "... exceeds max_array_len(256)" (and the like) for its limits
            over = isinstance(e, ValueError) and "exceeds max_" in str(e)
            raise _Refused("decode_limit" if over else "bad_frame", f"undecodable frame: {e}") from e
        if kind == NOTIFY:
            try:
                _, method, params = frame
            except (TypeError, ValueError) as e:
                raise ProtocolError(f"malformed notification: {e}") from e
            self._check_allowed(method)
            handler = self._handlers.notifications.get(method)
            if handler is None:
                log.debug("no handler for notification %r from %s", method, self.peer.address_str)
                return None
            try:
                result = handler(self.peer, params)
            except Exception:
                log.exception("notification handler %r failed", method)
                return None
            # Most notification handlers are plain functions returning None: skip the check.
            return result if result is not None and inspect.isawaitable(result) else None
        if kind == RESPONSE:
            try:
                _, rid, err, result = frame
                fut = self._pending.pop(rid, None)
                if fut is not None and not fut.done():
                    if err is None:
                        fut.set_result(result)
                    else:
                        fut.set_exception(error_from_wire(str(err[0]), str(err[1])))
            except (TypeError, ValueError, IndexError) as e:
                raise ProtocolError(f"malformed response: {e}") from e
            return None
        if kind == REQUEST:
            try:
                _, rid, method, params = frame
            except (TypeError, ValueError) as e:
                raise ProtocolError(f"malformed request: {e}") from e
            self._check_allowed(method)
            if method in self._handlers.inline:
                self._serve_inline(rid, method, params)
            else:
                task = asyncio.get_running_loop().create_task(self._serve(rid, method, params))
                self._tasks.add(task)
                task.add_done_callback(self._request_done)
            if len(self._tasks) + self._inline_count >= self._limits.max_inflight:
                self._inflight_free.clear()
            return None
        raise ProtocolError(f"unknown frame kind {kind!r}")

    def _check_allowed(self, method: Any) -> None:
        if self._allowed is not None and method not in self._allowed:
            raise _Refused(
                "method_not_open",
                f"method {str(method)[:64]!r} is not open to this peer (no certificate); "
                f"only {', '.join(sorted(self._allowed))} are"
            )

    def _refused(self, kind: str) -> None:
        if self._on_refusal is not None:
            self._on_refusal(kind)

    def _count_answer(self, code: str) -> None:
        """An error answer that is a refusal by the trust boundary (the policy's
        ``counted_codes``: permission denied, a bad join token) is counted."""
        kind = self._counted_codes.get(code)
        if kind is not None:
            self._refused(kind)

    def _request_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if len(self._tasks) + self._inline_count < self._limits.max_inflight:
            self._inflight_free.set()

    def _serve_inline(self, rid: int, method: str, params: Any) -> None:
        """An inline handler (see ``HandlerRegistry.add_handler``): called here, answered now
        or from its future's callback; counted in flight like a task until answered."""
        try:
            result = self._handlers.requests[method](self.peer, params)
        except Exception as e:
            self._answer(rid, method, e, None)
            return
        if isinstance(result, asyncio.Future):
            self._inline_count += 1
            result.add_done_callback(lambda fut: self._inline_done(rid, method, fut))
        else:
            self._answer(rid, method, None, result)

    def _inline_done(self, rid: int, method: str, fut: asyncio.Future) -> None:
        self._inline_count -= 1
        if len(self._tasks) + self._inline_count < self._limits.max_inflight:
            self._inflight_free.set()
        if fut.cancelled():
            self._answer(rid, method, RpcUnavailable(f"{method} was cancelled"), None)
        else:
            exc = fut.exception()
            self._answer(rid, method, exc, None if exc is not None else fut.result())

    def _answer(self, rid: int, method: str, exc: BaseException | None, result: Any) -> None:
        """Queue a response without waiting for the socket: the answers of one loop turn
        leave in one send (a send per answer costs more than the write it answers), and the
        in-flight cap bounds how many can queue up."""
        if self._closed:
            return
        try:
            if exc is None:
                frame = pack_frame((RESPONSE, rid, None, result), self._max_frame)
            elif isinstance(exc, RpcError):
                self._count_answer(exc.code)
                frame = pack_frame((RESPONSE, rid, (exc.code, exc.message), None), self._max_frame)
            else:
                raise exc
        except RpcError as e:  # the answer itself was too large
            frame = pack_frame((RESPONSE, rid, (e.code, e.message), None), self._max_frame)
        except Exception as e:
            log.error("handler for %r failed", method, exc_info=e)
            frame = pack_frame((RESPONSE, rid, (INTERNAL, f"{type(e).__name__}: {e}"), None), self._max_frame)
        self._queue_frame(frame)

    def _queue_frame(self, frame: bytes) -> None:
        """Frames queued here (answers of inline handlers, pipelined calls) are written
        together at the end of the loop turn: one send instead of one per frame."""
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush_outbox)
        self._outbox.append(frame)

    def _flush_outbox(self) -> None:
        frames, self._outbox = self._outbox, []
        if frames and not self._closed:
            self._writer.write(b"".join(frames))

    async def _await_notification(self, pending: Awaitable[Any]) -> None:
        try:
            await pending
        except Exception:
            log.exception("notification handler failed on %s", self.peer.address_str)

    async def _serve(self, rid: int, method: str, params: Any) -> None:
        handler = self._handlers.requests.get(method)
        try:
            if handler is None:
                raise RpcError(UNKNOWN_METHOD, f"no method {method!r}")
            result = handler(self.peer, params)
            if inspect.isawaitable(result):
                result = await result
            frame = pack_frame((RESPONSE, rid, None, result), self._max_frame)
        except RpcError as e:
            self._count_answer(e.code)
            frame = pack_frame((RESPONSE, rid, (e.code, e.message), None), self._max_frame)
        except Exception as e:
            log.exception("handler for %r failed", method)
            frame = pack_frame(
                (RESPONSE, rid, (INTERNAL, f"{type(e).__name__}: {e}"), None), self._max_frame
            )
        if self._closed:
            return
        self._writer.write(frame)
        try:
            await self.drain()
        except RpcUnavailable:
            pass

    # -- teardown ----------------------------------------------------------------------------

    def _shutdown(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        where = self.peer.address_str
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(RpcUnavailable(f"connection to {where} lost: {reason}"))
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()
        try:
            self._writer.close()
        except Exception:  # the transport may already be gone
            log.debug("error closing writer to %s", where, exc_info=True)
        if self._read_task is not asyncio.current_task():
            self._read_task.cancel()
        if self._backlog is not None and self._backlog is not asyncio.current_task():
            self._backlog.cancel()
        self._closed_event.set()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for cb in callbacks:
            try:
                cb()
            except Exception:
                log.exception("close callback failed for %s", where)


class _Refused(ProtocolError):
    """A protocol error that is also a refusal by the trust boundary, with its reason."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
