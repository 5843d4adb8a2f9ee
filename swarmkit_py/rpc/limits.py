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

- before any of that, the TLS handshake: at most ``max_handshakes`` in progress at once, each
  with a 16 KiB read buffer instead of asyncio's 256 KiB until the peer presents a certificate
  (``rpc.tls_accept``).

What is left per idle anonymous connection, measured with tracemalloc (bench/anon_conn_bench.py):
about 30 KB of Python objects and about 45 KB that OpenSSL allocates in C, so 64 parked
strangers hold about 5 MB and 256 stalled handshakes about 20 MB; a stranger that sends, up to
``max_inflight`` frames of 64 KiB (what the stream reader buffers while they are served).

With 64 KiB per anonymous frame, decoding one cannot take more than about a millisecond, far
below a Raft heartbeat, whatever the frame holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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
    max_handshakes: int = 256
    """TLS handshakes in progress at once (nobody is identified yet); more are dropped at
    accept. Connections waiting for a handshake slot (``max_active_handshakes``) hold no TLS
    state and are capped by ``max_connections``."""
    max_active_handshakes: int = 32
    """TLS handshakes computed at once; the others wait unread (tls_accept.py: one loop turn
    must not answer hundreds of them)."""
    counted_codes: Mapping[str, str] = field(default_factory=dict)
    """Error codes of answers that are refusals (say "permission_denied"), and the reason
    each is counted under in the server's ``refused``."""


REFUSAL_REASONS: dict[str, str] = {
    "handshakes_over_capacity": "dropped at accept: too many TLS handshakes in progress",
    "tls_handshake_failed": "TLS handshake failed (certificate not from the cluster CA, not TLS)",
    "tls_handshake_timeout": "TLS handshake not finished within the handshake timeout",
    "connections_over_capacity": "refused: the connection cap was reached",
    "anonymous_over_capacity": "refused: the cap on connections without a certificate was reached",
    "anonymous_evicted": "closed to make room: the longest-silent connection without a certificate",
    "anonymous_idle": "closed: no certificate and idle past the idle timeout",
    "anonymous_lifetime": "closed: no certificate and open past the lifetime limit",
    "revoked_certificate": "refused at admission: the certificate of a removed node",
    "frame_too_large": "closed: a frame above the peer's size limit",
    "decode_limit": "closed: a frame above the peer's msgpack container limits",
    "bad_frame": "closed: an undecodable or malformed frame",
    "method_not_open": "closed: a method not open to a peer without a certificate",
}
"""Why the RPC layer turned a peer away (keys of the server's ``refused`` counter; the policy's
``counted_codes`` add the refusals that handlers answer)."""
