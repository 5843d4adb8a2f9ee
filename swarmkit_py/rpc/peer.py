"""Who is on the other end of a connection, as far as TLS can prove it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography import x509

    from .connection import Connection


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Handed to every handler so that the control plane can authorize by certificate.

    ``cert`` is the DER certificate the peer presented in the TLS handshake (``None`` on a
    plain connection, or when the server's context did not ask for one). Only the CA's
    context decides whether it was verified; this layer just carries it. ``connection`` lets
    a handler push notifications back to the same peer (dispatcher sessions). ``peercert`` is
    the same certificate as `ssl` decoded it once it verified it (``getpeercert()``: subject,
    validity, SANs), ``None`` when it did not verify one; reading a role from it needs no
    `cryptography` (`ca.identity.peer_cert`).
    """

    address: tuple[str, int] | None
    cert: bytes | None
    connection: Connection = field(repr=False, compare=False)
    peercert: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def certificate(self) -> x509.Certificate | None:
        """The parsed certificate, for reading its subject (node id, role) or SANs."""
        if self.cert is None:
            return None
        from cryptography import x509

        return x509.load_der_x509_certificate(self.cert)

    @property
    def address_str(self) -> str:
        if self.address is None:
            return "?"
        return f"{self.address[0]}:{self.address[1]}"
