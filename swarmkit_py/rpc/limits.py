"""How much a peer may make us allocate and decode, chosen by who the peer is.

Port 2377 must accept callers without a certificate (a node that has not joined yet has
none), so the first bytes a stranger sends reach our decoder before any authorization. A
msgpack body is small on the wire and big in memory: one byte (``0x90``) is an empty list,
which Python stores in about 64 bytes, so a 4 MiB frame of nested empty lists became 300 MB
and blocked the event loop for most of a second (issue 9, hole 3). The defences here:

- a frame limit per *trust level*, read from the TLS certificate at accept time, before any
  frame: anonymous peers may send at most :data:`ANONYMOUS` (64 KiB, enough for a join with a
  CSR), workers :data:`WORKER`, managers everything Raft needs (snapshots);
- msgpack container limits (``max_array_len`` and friends of ``msgpack.unpackb``), so the
  number of objects a frame can create is bounded per container, not just per byte;
- a cap on requests served at once per connection: the reader stops reading (TCP pushes
  back on the sender) instead of spawning a task per frame without end;
- for anonymous connections only: the methods they may call (the RPC layer refuses the rest
  before any handler runs), a short idle timeout and a total lifetime, and a cap on how many
  may be open at once, where a newcomer evicts the longest-silent one rather than being locked
  out by parked sockets (see :class:`ServerPolicy`).

What is left: each connection's socket and TLS buffers (the stream reader may hold up to 2 MiB
while all of a connection's requests are being served), so the worst case for strangers is
about ``max_anonymous`` times that.

With 64 KiB per anonymous frame, decoding one cannot take more than about a millisecond, far
below a Raft heartbeat, whatever the frame holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .framing import DEFAULT_MAX_FRAME
from .peer import PeerInfo


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Limits applied to every frame received on one connection."""

    max_frame: int
    max_array_len: int
    max_map_len: int
    max_str_len: int
    max_bin_len: int
    max_inflight: int
    """Requests from this peer being served at once; beyond it the reader waits."""

    def unpack_kwargs(self) -> dict[str, int]:
        return {
            "max_array_len": self.max_array_len,
            "max_map_len": self.max_map_len,
            "max_str_len": self.max_str_len,
            "max_bin_len": self.max_bin_len,
            "max_ext_len": 0,
        }


def trusted_limits(max_frame: int = DEFAULT_MAX_FRAME) -> DecodeLimits:
    """A peer we trust with large frames (a manager: Raft appends and snapshots)."""
    return DecodeLimits(
        max_frame=max_frame,
        max_array_len=1 << 20,
        max_map_len=1 << 20,
        max_str_len=max_frame,
        max_bin_len=max_frame,
        max_inflight=1024,
    )


ANONYMOUS = DecodeLimits(
    max_frame=64 * 1024,
    max_array_len=256,
    max_map_len=32,
    max_str_len=32 * 1024,
    max_bin_len=32 * 1024,
    max_inflight=4,
)
"""A caller without a certificate: `ca.root` and `ca.join` (a CSR is under 16 KiB)."""

WORKER = DecodeLimits(
    max_frame=4 * 1024 * 1024,
    max_array_len=1 << 16,
    max_map_len=1 << 16,
    max_str_len=1024 * 1024,
    max_bin_len=1024 * 1024,
    max_inflight=64,
)
"""An authenticated node that is not a manager: sessions, heartbeats, task status, renewal."""


@dataclass(frozen=True, slots=True)
class ServerPolicy:
    """What an :class:`~swarmkit_py.rpc.RpcServer` lets in, and with which limits.

    ``limits_for(peer)`` picks the :class:`DecodeLimits` of a new connection from its
    certificate; ``admit(peer)`` returns a reason to refuse it outright (a revoked
    certificate), or None. Anonymous means "presented no certificate" (``peer.cert is None``).
    """

    limits_for: Callable[[PeerInfo], DecodeLimits]
    anonymous_methods: frozenset[str] = frozenset()
    admit: Callable[[PeerInfo], str | None] | None = None
    max_connections: int = 4096
    max_anonymous: int = 64
    anonymous_idle_timeout: float = 10.0
    anonymous_evict_after: float = 1.0
    """At the anonymous cap, a newcomer evicts the longest-silent stranger if it has been
    silent this long (else the newcomer is refused)."""
    anonymous_lifetime: float = 60.0
    sweep_interval: float = 1.0
