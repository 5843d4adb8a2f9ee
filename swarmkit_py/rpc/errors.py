"""The errors a caller of the RPC layer can see, and how they cross the wire.

An error travels as a ``(code, message)`` pair so that a handler on one node can tell the
caller on another *what kind* of failure happened (say ``"not_leader"``) without both sides
sharing exception classes. The codes the RPC layer itself produces are defined here; handlers
are free to use their own codes, which arrive as a plain :class:`RpcError`.
"""

from __future__ import annotations

UNAVAILABLE = "unavailable"
DEADLINE_EXCEEDED = "deadline_exceeded"
UNKNOWN_METHOD = "unknown_method"
INTERNAL = "internal"
FRAME_TOO_LARGE = "frame_too_large"
PROTOCOL_ERROR = "protocol_error"


class RpcError(Exception):
    """A failed call; ``code`` is meant for programs, ``message`` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RpcUnavailable(RpcError):
    """The peer could not be reached or the connection died before an answer came.

    Retrying elsewhere (another manager) or later is the usual reaction, which is why it has
    its own class rather than a code to compare.
    """

    def __init__(self, message: str) -> None:
        super().__init__(UNAVAILABLE, message)


class RpcTimeout(RpcError, TimeoutError):
    """No answer within the deadline; also a ``TimeoutError`` so generic code catches it.

    The handler may still have run on the peer: a timed-out write is of unknown outcome.
    """

    def __init__(self, message: str) -> None:
        super().__init__(DEADLINE_EXCEEDED, message)


class FrameTooLarge(RpcError):
    """A frame above the configured maximum, refused before it is sent or read.

    On the reading side it closes the connection: after a bogus length the byte stream can no
    longer be trusted to be in step.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            FRAME_TOO_LARGE, f"frame of {size} bytes exceeds the maximum of {limit} bytes"
        )
        self.size = size
        self.limit = limit


class ProtocolError(RpcError):
    """The peer sent something that is not a frame of this protocol; the connection is closed."""

    def __init__(self, message: str) -> None:
        super().__init__(PROTOCOL_ERROR, message)


def error_from_wire(code: str, message: str) -> RpcError:
    """Rebuild the most specific error class for a code received from a peer."""
    if code == UNAVAILABLE:
        return RpcUnavailable(message)
    if code == DEADLINE_EXCEEDED:
        return RpcTimeout(message)
    return RpcError(code, message)
