"""When a node should ask for a new certificate.

Swarm renews at a random point between 50% and 80% of a certificate's lifetime. Random, so that
the thousand nodes that joined in the same minute do not all hit the CA in the same minute 90
days later; not before half-life, so a CA outage of several weeks is survivable; not later than
80%, so there is time to retry before expiry. The point is drawn once per certificate (keep
the fraction) and then `needs_renewal` is a pure function of the clock: re-drawing at every
check would skew renewals toward the early end.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import TYPE_CHECKING

from .identity import CertRole, identity_from_cert

if TYPE_CHECKING:
    from cryptography import x509

    from .sslfacts import CertFacts

RENEW_LOWER_FRACTION = 0.5
RENEW_UPPER_FRACTION = 0.8


def renewal_fraction(rng: random.Random | None = None) -> float:
    """Draw the point of the lifetime at which to renew; inject `rng` for determinism."""
    r = rng if rng is not None else random.SystemRandom()
    return r.uniform(RENEW_LOWER_FRACTION, RENEW_UPPER_FRACTION)


def renewal_time(cert: bytes | str | x509.Certificate | CertFacts, fraction: float) -> datetime:
    """The moment at which `fraction` of the certificate's validity has elapsed. `cert` may
    be `sslfacts.CertFacts` (read without `cryptography`, as a worker does)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"renewal fraction must be in (0, 1], got {fraction}")
    c = cert if hasattr(cert, "not_valid_after_utc") else _load(cert)
    start, end = c.not_valid_before_utc, c.not_valid_after_utc
    return start + (end - start) * fraction


def needs_renewal(
    cert: bytes | str | x509.Certificate,
    now: datetime,
    fraction: float,
    desired_role: CertRole | str | None = None,
) -> bool:
    """True once `fraction` of the lifetime has passed (or the cert expired), or at once when
    the cluster wants this node in a different role than its certificate says: a promotion
    must not wait weeks for the next scheduled renewal."""
    from .certs import as_utc

    c = _load(cert)
    if desired_role is not None and identity_from_cert(c).role != CertRole(desired_role):
        return True
    return as_utc(now) >= renewal_time(c, fraction)


def _load(cert: bytes | str | x509.Certificate) -> x509.Certificate:
    from .certs import load_certificate

    return load_certificate(cert)
