"""Node-side key and CSR generation, and the small parsing helpers every other module shares.

The node makes its own key and sends only a CSR: the private key never leaves the host it
identifies, so a compromised manager or a sniffed join cannot impersonate the node later. The
subject the node writes into its CSR is advisory only; the CA decides node ID, role and cluster
(see `authority.RootCA.issue_node_certificate`), because a node that could pick its own role
could promote itself.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from .errors import InvalidCertificateError, InvalidCSRError
from .sslfacts import utcnow  # noqa: F401 - re-exported: `ca.certs.utcnow` is its name for callers

# The smallest RSA modulus we sign for or accept as a CA key; ECDSA P-256 is what we generate.
MIN_RSA_BITS = 2048

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def as_utc(moment: datetime | None) -> datetime:
    """Accept naive datetimes as UTC: mixing naive and aware ones raises deep inside
    comparisons, far from the caller's mistake."""
    if moment is None:
        return utcnow()
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """ECDSA P-256, as Swarm uses: small certs, fast handshakes, and supported everywhere the
    Docker CLI runs."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_to_pem(key: PrivateKey) -> bytes:
    # PKCS#8 without encryption: the file mode (0600) is the protection, as in Swarm without
    # autolock; an encrypted key would need a passphrase at every agent start.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes | str) -> PrivateKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidCertificateError(f"cannot read private key: {exc}") from exc
    check_key_strength(key, InvalidCertificateError)
    return key  # type: ignore[return-value]


def check_key_strength(key: object, error: type[Exception]) -> None:
    """Refuse key types and sizes we would not generate ourselves, whoever made them."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.key_size < 256:
            raise error(f"EC key on curve {key.curve.name} is too weak (need 256 bits or more)")
        return
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise error(f"RSA key of {key.key_size} bits is too weak (need {MIN_RSA_BITS})")
        return
    raise error(f"unsupported key type {type(key).__name__} (use ECDSA or RSA)")


def generate_key_and_csr(common_name: str = "") -> tuple[bytes, bytes]:
    """Run on the joining node: returns (key_pem, csr_pem). Keep the key, send the CSR.

    `common_name` is only a hint (the node may not know its ID yet); the CA overwrites it.
    """
    key = generate_private_key()
    return private_key_to_pem(key), csr_for_key(key, common_name)


def csr_for_key(key: PrivateKey, common_name: str = "") -> bytes:
    """A CSR for an existing key: renewal may keep the key, only the certificate changes."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(attrs))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def load_csr(pem_or_der: bytes | str) -> x509.CertificateSigningRequest:
    """Parse and check a CSR's self-signature: it proves the requester holds the private key
    for the public key it asks us to certify."""
    data = pem_or_der.encode() if isinstance(pem_or_der, str) else pem_or_der
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise InvalidCSRError(f"cannot parse certificate signing request: {exc}") from exc
    if not csr.is_signature_valid:
        raise InvalidCSRError("certificate signing request signature does not verify")
    check_key_strength(csr.public_key(), InvalidCSRError)
    return csr


def load_certificate(der_or_pem: bytes | str | x509.Certificate) -> x509.Certificate:
    """Accept what the caller has at hand: PEM from a file, DER from `getpeercert(True)`."""
    if isinstance(der_or_pem, x509.Certificate):
        return der_or_pem
    data = der_or_pem.encode() if isinstance(der_or_pem, str) else der_or_pem
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise InvalidCertificateError(f"cannot parse certificate: {exc}") from exc


def certificate_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate_to_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def public_key_der(key: object) -> bytes:
    """Canonical bytes of a public key, so two keys can be compared for equality."""
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches_certificate(key: PrivateKey, cert: x509.Certificate) -> bool:
    """A cert paired with the wrong key fails only at handshake time, on the peer, with an
    obscure alert; checking here turns that into a clear local error."""
    return public_key_der(key.public_key()) == public_key_der(cert.public_key())
