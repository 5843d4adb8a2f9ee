"""What the kernel knows about a connection's peer: Linux TCP_INFO, read without any I/O.

Why: a heartbeat that stops arriving says "the peer's process did not speak", which is also
what a live process stalled on a loaded machine looks like. The peer's *kernel* acknowledges
every segment we send within a round trip whether or not its process is scheduled, and a
dead or unplugged host acknowledges nothing (no FIN, no RST: a power cut just goes silent).
So data we sent that stays unacknowledged through a retransmission timeout is evidence about
the host and the network, not about the process's pace: the dispatcher uses it to declare a
power-cut node Down well before a stalled node's grace would end (dispatcher.py, "kernel
evidence"), without shortening that grace.

Only the fields of ``struct tcp_info`` (linux/tcp.h) used here are decoded; they sit at the
same offsets in every kernel since 2.6. Elsewhere (another OS, a non-TCP transport, a closed
socket) ``tcp_info`` returns None and callers fall back to the heartbeat clock alone.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

_TCP_INFO = getattr(socket, "TCP_INFO", None)
# u8 state, ca_state, retransmits, probes, backoff, options, wscales, flags; then u32 rto,
# ato, snd_mss, rcv_mss, unacked, sacked, lost, retrans, fackets, last_data_sent,
# last_ack_sent, last_data_recv, last_ack_recv
_LAYOUT = struct.Struct("=8B13I")
TCP_ESTABLISHED = 1


@dataclass(frozen=True, slots=True)
class TcpInfo:
    state: int
    retransmits: int  # RTO expiries since the last ACK (reset by any new ACK)
    unacked: int  # segments sent and not yet acknowledged
    rto_s: float
    last_ack_recv_s: float  # since the last ACK from the peer
    last_data_sent_s: float

    def peer_silent_for(self, seconds: float) -> bool:
        """Data is in flight, it has been retransmitted at least once, and no ACK came for
        ``seconds``: the peer's kernel is not answering (host down or cut off). A live host
        whose process is stalled ACKs within a round trip; a full receive window does not
        count (nothing is in flight then, only zero-window probes, which are answered)."""
        return (self.state == TCP_ESTABLISHED and self.unacked > 0 and self.retransmits >= 1
                and self.last_ack_recv_s >= seconds)


def tcp_info(sock: Any) -> TcpInfo | None:
    """TCP_INFO of ``sock`` (a socket, or asyncio's TransportSocket), None when unavailable."""
    if sock is None or _TCP_INFO is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _LAYOUT.size)
    except (OSError, ValueError, AttributeError):
        return None
    if len(raw) < _LAYOUT.size:
        return None
    f = _LAYOUT.unpack_from(raw)
    return TcpInfo(state=f[0], retransmits=f[2], unacked=f[12], rto_s=f[8] / 1e6,
                   last_ack_recv_s=f[20] / 1000, last_data_sent_s=f[17] / 1000)
