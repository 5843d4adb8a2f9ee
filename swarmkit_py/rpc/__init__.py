"""Framed msgpack RPC over asyncio streams, optionally mutually authenticated with TLS.

The one wire protocol between nodes: Raft messages (notifications), joins, dispatcher
sessions and forwarded proposals (requests) all share a connection and a port.
"""

from .client import RpcClient, open_connection
from .connection import Connection
from .errors import (
    DEADLINE_EXCEEDED,
    FRAME_TOO_LARGE,
    INTERNAL,
    PROTOCOL_ERROR,
    UNAVAILABLE,
    UNKNOWN_METHOD,
    FrameTooLarge,
    ProtocolError,
    RpcError,
    RpcTimeout,
    RpcUnavailable,
)
from .framing import DEFAULT_MAX_FRAME, FrameDecoder, pack_frame
from .limits import ANONYMOUS, WORKER, DecodeLimits, ServerPolicy, trusted_limits
from .peer import PeerInfo
from .registry import HandlerRegistry
from .server import RpcServer

__all__ = [
    "ANONYMOUS",
    "WORKER",
    "DecodeLimits",
    "ServerPolicy",
    "trusted_limits",
    "DEADLINE_EXCEEDED",
    "DEFAULT_MAX_FRAME",
    "FRAME_TOO_LARGE",
    "INTERNAL",
    "PROTOCOL_ERROR",
    "UNAVAILABLE",
    "UNKNOWN_METHOD",
    "Connection",
    "FrameDecoder",
    "FrameTooLarge",
    "HandlerRegistry",
    "PeerInfo",
    "ProtocolError",
    "RpcClient",
    "RpcError",
    "RpcServer",
    "RpcTimeout",
    "RpcUnavailable",
    "open_connection",
    "pack_frame",
]
