"""Join tokens in Swarm's v1 format: `SWMTKN-1-<CA digest>-<secret>`.

The token carries two things with two different jobs. The digest (SHA-256 of the root CA
certificate's DER, base36, zero-padded to 50 characters) is not secret: it lets a joining node
fetch the CA certificate over an unauthenticated connection and check it is the right one
before trusting it, i.e. before sending anything secret. The secret (16 random bytes, base36,
zero-padded to 25 characters) is what the manager checks to admit the node, and which role it
gets: there is one token per role, and rotating one invalidates it for new joins only.

The same format as Swarm means tokens look familiar in `docker swarm join-token` output and
operators' scripts that grep for SWMTKN-1 keep working.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import CADigestMismatchError, InvalidCertificateError, InvalidJoinTokenError
from .identity import CertRole
from .sslfacts import certificate_der

if TYPE_CHECKING:
    from cryptography import x509

TOKEN_PREFIX = "SWMTKN"
TOKEN_VERSION = "1"
DIGEST_LENGTH = 50  # base36 digits needed for 2**256 - 1
SECRET_LENGTH = 25  # base36 digits needed for 2**128 - 1
SECRET_BYTES = 16
TOKEN_PATTERN = re.compile(r"^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$")

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_BASE36_RE = re.compile(r"^[0-9a-z]*$")


def base36(value: int, width: int) -> str:
    """Lower-case base36, left-padded with zeros: Go's big.Int.Text(36) plus Swarm's padding."""
    if value < 0:
        raise ValueError("base36 of a negative number")
    digits = []
    while value:
        value, rem = divmod(value, 36)
        digits.append(_BASE36[rem])
    text = "".join(reversed(digits)) or "0"
    if len(text) > width:
        raise ValueError(f"value needs {len(text)} base36 digits, more than {width}")
    return text.rjust(width, "0")


def ca_digest(ca_cert: bytes | str | x509.Certificate) -> str:
    """The token's digest part for a root CA certificate (DER, PEM of exactly that one
    certificate, or parsed). PEM and DER are read by `ssl` (sslfacts.certificate_der), so a
    joining worker's agent loads no `cryptography` for its check."""
    if isinstance(ca_cert, bytes | str):
        der = certificate_der(ca_cert)
    else:
        from .certs import certificate_to_der

        der = certificate_to_der(ca_cert)
    return base36(int.from_bytes(hashlib.sha256(der).digest(), "big"), DIGEST_LENGTH)


@dataclass(frozen=True, slots=True)
class JoinToken:
    ca_digest: str
    secret: str

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}-{TOKEN_VERSION}-{self.ca_digest}-{self.secret}"

    def __repr__(self) -> str:
        # Keep the secret out of logs and tracebacks.
        return f"JoinToken(ca_digest={self.ca_digest!r}, secret='***')"


def generate_join_token(
    ca_cert: bytes | str | x509.Certificate,
    randbytes: Callable[[int], bytes] = secrets.token_bytes,
) -> str:
    """A new token for this CA. `randbytes` is injectable so tests can be deterministic; the
    default is the OS CSPRNG."""
    raw = randbytes(SECRET_BYTES)
    if len(raw) != SECRET_BYTES:
        raise ValueError(f"randbytes returned {len(raw)} bytes, expected {SECRET_BYTES}")
    secret = base36(int.from_bytes(raw, "big"), SECRET_LENGTH)
    return str(JoinToken(ca_digest=ca_digest(ca_cert), secret=secret))


def parse_join_token(token: str) -> JoinToken:
    """Split and validate, naming the first thing wrong so the operator can fix a paste error.

    Messages never echo the secret part back.
    """
    if not isinstance(token, str):
        raise InvalidJoinTokenError(f"expected a string, got {type(token).__name__}")
    token = token.strip()
    if not token:
        raise InvalidJoinTokenError("token is empty")
    parts = token.split("-")
    if parts[0] != TOKEN_PREFIX:
        raise InvalidJoinTokenError(f"token must start with {TOKEN_PREFIX}-")
    if len(parts) != 4:
        raise InvalidJoinTokenError(
            f"expected 4 dash-separated parts (SWMTKN-1-<digest>-<secret>), got {len(parts)}"
        )
    _, version, digest, secret = parts
    if version != TOKEN_VERSION:
        raise InvalidJoinTokenError(
            f"unsupported token version {version!r} (only version {TOKEN_VERSION} is supported)"
        )
    _check_base36_field("CA digest", digest, DIGEST_LENGTH, 256)
    _check_base36_field("secret", secret, SECRET_LENGTH, SECRET_BYTES * 8)
    return JoinToken(ca_digest=digest, secret=secret)


def _check_base36_field(label: str, value: str, length: int, bits: int) -> None:
    if len(value) != length:
        raise InvalidJoinTokenError(f"{label} must be {length} characters, got {len(value)}")
    if not _BASE36_RE.match(value):
        raise InvalidJoinTokenError(f"{label} must contain only 0-9 and a-z")
    if int(value, 36) >= 1 << bits:
        # Right length and alphabet, but larger than any real digest/secret: a typo, not a token.
        raise InvalidJoinTokenError(f"{label} is out of range")


def ca_digest_matches(token: str | JoinToken, ca_cert_pem: bytes | str) -> bool:
    """Whether the CA certificate a manager sent is the one the token names. A joining node
    fetches the CA without trusting it, calls this, and stops if it is False."""
    parsed = token if isinstance(token, JoinToken) else parse_join_token(token)
    try:
        actual = ca_digest(ca_cert_pem)
    except InvalidCertificateError:
        return False
    return hmac.compare_digest(parsed.ca_digest, actual)


def require_ca_digest(token: str | JoinToken, ca_cert_pem: bytes | str) -> None:
    """`ca_digest_matches` that raises a message fit for the operator's terminal."""
    parsed = token if isinstance(token, JoinToken) else parse_join_token(token)
    if not ca_digest_matches(parsed, ca_cert_pem):
        try:
            actual = ca_digest(ca_cert_pem)
        except InvalidCertificateError as exc:
            raise CADigestMismatchError(
                f"the manager sent an unreadable CA certificate ({exc}); refusing to join"
            ) from exc
        raise CADigestMismatchError(
            "the manager's root CA does not match the join token "
            f"(token names {parsed.ca_digest[:12]}..., manager has {actual[:12]}...): "
            "wrong manager address, wrong token, or someone in between; refusing to join"
        )


def secrets_match(presented: str | JoinToken, expected: str | JoinToken) -> bool:
    """Whether a joining node's token equals one the cluster issued, in constant time so the
    answer's timing leaks nothing about how many characters were right. A malformed presented
    token is simply not a match (the caller reports "invalid token" without detail)."""
    try:
        a = presented if isinstance(presented, JoinToken) else parse_join_token(presented)
    except InvalidJoinTokenError:
        return False
    b = expected if isinstance(expected, JoinToken) else parse_join_token(expected)
    # Compare both parts, always both, so a digest mismatch does not return early.
    digest_ok = hmac.compare_digest(a.ca_digest.encode(), b.ca_digest.encode())
    secret_ok = hmac.compare_digest(a.secret.encode(), b.secret.encode())
    return digest_ok & secret_ok


def role_for_token(presented: str, tokens: Mapping[CertRole, str]) -> CertRole | None:
    """Which role a presented token admits, given the cluster's current token per role, or
    None. Every token is compared, even after a match, so timing does not reveal which role's
    token was close."""
    found: CertRole | None = None
    for role, expected in tokens.items():
        if secrets_match(presented, expected) and found is None:
            found = CertRole(role)
    return found
