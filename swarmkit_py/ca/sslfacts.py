"""What a worker needs to know about certificates, from the standard library's `ssl` alone.

A worker-only agent checks certificates all the time (every server it dials must be a manager
of its cluster, its own certificate's renewal point, its key against its certificate) but
never signs one. `cryptography` costs about 8 MB of RSS to import (its Rust extension's pages
and the x509 classes: bench/agent_rss.py), a sixth of the worker's 50 MB budget, so the
worker's checks go through OpenSSL as `ssl` exposes it, and `cryptography` is loaded only by
what signs, verifies signatures or makes keys (the CA, auto-lock, client bundles, and the
join's key, which a worker's agent makes in a child process: ca/newkey.py).

- A verified peer's certificate: `SSLObject.getpeercert()` (the decoded dict: subject,
  validity, SANs), carried by `rpc.PeerInfo.peercert`.
- One's own certificate: the same dict for a PEM or DER certificate (`decode`), made by the
  decoder `getpeercert()` uses (`_ssl._test_decode_cert`, which takes a file name: the bytes go
  through an anonymous memfd, as in `tls._private_file`). Where a Python lacks that function
  it falls back to `cryptography` and builds the same dict.
- A key against its certificate: `SSLContext.load_cert_chain`, which refuses a pair that does
  not belong together (`pair_error`).
- A certificate's DER (`certificate_der`), for the digest a join token names.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import InvalidCertificateError

CertDict = dict[str, Any]
"""A certificate as `ssl.SSLObject.getpeercert()` decodes it."""


@dataclass(frozen=True, slots=True)
class CertFacts:
    """The parts of a certificate a worker schedules by (its renewal point, which one it is),
    named as `cryptography.x509.Certificate` names them so `ca.renewal` takes either."""

    serial_number: int
    not_valid_before_utc: datetime
    not_valid_after_utc: datetime
    decoded: CertDict


def utcnow() -> datetime:
    """The one place that reads the wall clock, used only when a caller passes no `now`."""
    return datetime.now(UTC)


def _as_pem(cert: bytes | str) -> bytes:
    data = cert.encode() if isinstance(cert, str) else bytes(cert)
    if data.lstrip().startswith(b"-----BEGIN"):
        return data
    return ssl.DER_cert_to_PEM_cert(data).encode()


_ONE_PEM = re.compile(rb"\s*-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----\s*")


def certificate_der(cert: bytes | str) -> bytes:
    """The DER of one certificate, given as DER or as PEM; InvalidCertificateError for anything
    else, a PEM of two certificates included. Strict on purpose: a joining node trusts exactly
    the certificate whose digest its token names (worker/join.py), never a second one riding
    along in the same PEM (OpenSSL would trust every certificate of a PEM it is given)."""
    data = cert.encode() if isinstance(cert, str) else bytes(cert)
    if data.lstrip().startswith(b"-----BEGIN"):
        m = _ONE_PEM.fullmatch(data)
        if m is None:
            raise InvalidCertificateError("not a PEM of exactly one certificate")
        try:
            data = base64.b64decode(re.sub(rb"\s+", b"", m[1]), validate=True)
        except binascii.Error as exc:
            raise InvalidCertificateError(f"cannot parse certificate: bad base64 ({exc})") from None
    decode(data)  # a certificate, or InvalidCertificateError
    return data


def decode(cert: bytes | str) -> CertDict:
    """A PEM or DER certificate as `getpeercert()` would give it; InvalidCertificateError for
    anything that is not one."""
    decoder = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if decoder is None:
        return _decode_with_cryptography(cert)
    from .tls import _private_file

    with _private_file(_as_pem(cert)) as path:
        try:
            return decoder(path)
        except (ssl.SSLError, ValueError) as exc:
            raise InvalidCertificateError(f"cannot parse certificate: {exc}") from None


def facts(cert: bytes | str | CertDict) -> CertFacts:
    d = cert if isinstance(cert, dict) else decode(cert)
    return CertFacts(
        serial_number=int(d["serialNumber"], 16),
        not_valid_before_utc=_when(d["notBefore"]),
        not_valid_after_utc=_when(d["notAfter"]),
        decoded=d,
    )


def _when(text: str) -> datetime:
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(text), UTC)


def subject_values(d: CertDict, name: str) -> list[str]:
    """Every value of the subject attribute `name` (`commonName`, `organizationalUnitName`...)."""
    return [value for rdn in d.get("subject", ()) for key, value in rdn if key == name]


KEY_MISMATCH = "the private key does not match the certificate"
"""`pair_error`'s answer (and `verify_issued`'s error) when the key is another certificate's."""


def pair_error(cert_pem: bytes | str, key_pem: bytes | str,
               ctx: ssl.SSLContext | None = None) -> str | None:
    """Why OpenSSL would not serve `cert_pem` with `key_pem` (None when it would, and then
    `ctx`, if given, holds them): the key does not match the certificate, or either does not
    parse. An encrypted key is refused, never prompted for."""
    from .tls import _private_file

    def no_password() -> bytes:
        raise InvalidCertificateError("the private key is encrypted")

    as_bytes = [x.encode() if isinstance(x, str) else x for x in (cert_pem, key_pem)]
    ctx = ctx if ctx is not None else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with _private_file(as_bytes[0]) as cert_path, _private_file(as_bytes[1]) as key_path:
        try:
            ctx.load_cert_chain(certfile=cert_path, keyfile=key_path, password=no_password)
        except InvalidCertificateError as exc:
            return str(exc)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                return KEY_MISMATCH
            return f"cannot load the certificate and key: {exc.reason or exc}"
    return None


X509_V_FLAG_NO_CHECK_TIME = 0x200000
"""OpenSSL's flag (1.1.0 on) to check a chain's signatures but not the clock: `verify_issued`
answers "did the CA sign it", as `RootCA.verify(now=None)` does."""


def verify_issued(cert_pem: bytes | str, key_pem: bytes | str, ca_pem: bytes | str) -> CertDict:
    """Check that `ca_pem` signed `cert_pem` and that `key_pem` is its key, the way a manager
    checks a client certificate on its cluster port: a TLS handshake in memory (two
    `ssl.MemoryBIO` ends, no socket), this certificate presented as the client's and verified
    by a server that trusts only `ca_pem`. Returns the certificate as `getpeercert()` decodes
    it; InvalidCertificateError says what is wrong."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    # No network here: both ends are in this process (MemoryBIOs). The check is the server
    # end's CERT_REQUIRED against `ca_pem`; this client end only presents the certificate, and
    # the server end it talks to presents that same certificate, so there is nothing to verify.
    client.verify_mode = ssl.CERT_NONE
    why = pair_error(cert_pem, key_pem, client)
    if why is not None:
        raise InvalidCertificateError(why)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pair_error(cert_pem, key_pem, server)
    server.verify_mode = ssl.CERT_REQUIRED
    server.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
    try:
        server.load_verify_locations(cadata=ca_pem.decode() if isinstance(ca_pem, bytes) else ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidCertificateError(f"cannot parse the CA certificate: {exc}") from None
    bios = [ssl.MemoryBIO() for _ in range(4)]
    ends = [client.wrap_bio(bios[0], bios[1]), server.wrap_bio(bios[2], bios[3], server_side=True)]
    done = [False, False]
    for _ in range(8):  # TLS 1.3 needs two round trips; each pass moves one flight each way
        for i, end in enumerate(ends):
            if done[i]:
                continue
            try:
                end.do_handshake()
                done[i] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as exc:
                raise InvalidCertificateError(
                    f"certificate was not issued by this root CA: {exc.verify_message}") from None
            except ssl.SSLError as exc:
                raise InvalidCertificateError(f"certificate refused in a TLS handshake: {exc}") from None
        bios[2].write(bios[1].read())
        bios[0].write(bios[3].read())
        if all(done):
            return ends[1].getpeercert()
    raise InvalidCertificateError("certificate check: the in-memory TLS handshake did not finish")


def _decode_with_cryptography(cert: bytes | str) -> CertDict:
    """The same dict as `_test_decode_cert` (the fields this package reads), for a Python
    without that function."""
    from cryptography.x509.oid import NameOID

    from .certs import load_certificate

    c = load_certificate(cert)
    names = {NameOID.COMMON_NAME: "commonName", NameOID.ORGANIZATIONAL_UNIT_NAME: "organizationalUnitName",
             NameOID.ORGANIZATION_NAME: "organizationName"}
    fmt = "%b %d %H:%M:%S %Y GMT"
    return {
        "subject": tuple(((names.get(a.oid, a.oid.dotted_string), a.value),) for a in c.subject),
        "serialNumber": format(c.serial_number, "X"),
        "notBefore": c.not_valid_before_utc.strftime(fmt),
        "notAfter": c.not_valid_after_utc.strftime(fmt),
    }
