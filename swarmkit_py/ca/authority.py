"""The cluster's root certificate authority: created at `init` or supplied by the operator,
kept on managers, used to sign every node certificate.

Everything trust-related hangs off this one key pair: the join-token digest names its
certificate, mutual TLS trusts only it, and a node's role is whatever it signed into the node's
certificate. Workers hold a `RootCA` without a key (`can_sign` is False): enough to verify
peers, not to mint identities.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .certs import (
    PrivateKey,
    as_utc,
    certificate_to_der,
    certificate_to_pem,
    check_key_strength,
    generate_private_key,
    key_matches_certificate,
    load_certificate,
    load_csr,
    load_private_key,
    private_key_to_pem,
)
from .errors import CAError, InvalidCAError, InvalidCertificateError, InvalidCSRError
from .files import (
    CERT_MODE,
    KEY_MODE,
    ROOT_CA_CERT_FILE,
    ROOT_CA_KEY_FILE,
    ensure_private_dir,
    write_atomic,
)
from .identity import NODE_ROLES, CertRole, address_names, identity_from_cert

ROOT_CA_COMMON_NAME = "swarm-ca"
# Swarm's defaults: a root that outlives any cluster (20 years), node certs short enough that a
# stolen one expires on its own (90 days), renewed automatically well before that.
ROOT_CA_VALIDITY = timedelta(days=20 * 365)
NODE_CERT_VALIDITY = timedelta(days=90)
# Start validity a little in the past so a peer whose clock runs behind ours does not reject a
# certificate as "not yet valid" right after issuance.
CERT_BACKDATE = timedelta(hours=1)
# Refuse validities short enough that renewal (at 50-80% of it) would hammer the CA.
MIN_NODE_CERT_VALIDITY = timedelta(minutes=10)


def _serial() -> int:
    # 159 random bits: positive, at most 20 bytes as RFC 5280 requires, and unpredictable.
    return int.from_bytes(os.urandom(20), "big") >> 1


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """What the CA hands back to a joining node: its certificate and the root to trust."""

    cert_pem: bytes
    ca_cert_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return load_certificate(self.cert_pem)


class RootCA:
    """The root certificate, and its key when this process may sign."""

    def __init__(self, cert: x509.Certificate, key: PrivateKey | None = None) -> None:
        _validate_ca(cert, key)
        self._cert = cert
        self._key = key

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        now: datetime | None = None,
        common_name: str = ROOT_CA_COMMON_NAME,
        validity: timedelta = ROOT_CA_VALIDITY,
    ) -> RootCA:
        """A fresh self-signed root, as `swarmkit-py init` makes when no CA is supplied."""
        now = as_utc(now)
        key = generate_private_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        public = key.public_key()
        ski = x509.SubjectKeyIdentifier.from_public_key(public)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(_serial())
            .not_valid_before(now - CERT_BACKDATE)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def from_pem(
        cls,
        cert_pem: bytes | str,
        key_pem: bytes | str | None = None,
        now: datetime | None = None,
    ) -> RootCA:
        """Load operator-supplied (or stored) material, refusing anything that could not work
        as this cluster's root: not a CA, not self-signed, expired, or a key that is not the
        certificate's. Refusing at `init` beats a cluster whose first join fails."""
        try:
            cert = load_certificate(cert_pem)
        except InvalidCertificateError as exc:
            raise InvalidCAError(f"root CA certificate: {exc}") from exc
        key = None
        if key_pem is not None:
            try:
                key = load_private_key(key_pem)
            except InvalidCertificateError as exc:
                raise InvalidCAError(f"root CA key: {exc}") from exc
        now = as_utc(now)
        if now > cert.not_valid_after_utc:
            raise InvalidCAError(
                f"root CA certificate expired on {cert.not_valid_after_utc.isoformat()}"
            )
        if now < cert.not_valid_before_utc:
            raise InvalidCAError(
                f"root CA certificate is not valid before {cert.not_valid_before_utc.isoformat()}"
            )
        return cls(cert, key)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], now: datetime | None = None) -> RootCA:
        """Load from a directory written by `save`; the key is optional (workers have none)."""
        path = Path(directory)
        cert_pem = (path / ROOT_CA_CERT_FILE).read_bytes()
        key_path = path / ROOT_CA_KEY_FILE
        key_pem = key_path.read_bytes() if key_path.exists() else None
        return cls.from_pem(cert_pem, key_pem, now=now)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write cert (0644) and, if held, key (0600), each atomically."""
        path = ensure_private_dir(directory)
        if self._key is not None:
            write_atomic(path / ROOT_CA_KEY_FILE, private_key_to_pem(self._key), KEY_MODE)
        write_atomic(path / ROOT_CA_CERT_FILE, self.cert_pem, CERT_MODE)

    def without_key(self) -> RootCA:
        """The verify-only view that is safe to hand to workers."""
        return RootCA(self._cert)

    # -- properties -----------------------------------------------------------------------

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def cert_pem(self) -> bytes:
        return certificate_to_pem(self._cert)

    @property
    def cert_der(self) -> bytes:
        return certificate_to_der(self._cert)

    @property
    def key_pem(self) -> bytes:
        if self._key is None:
            raise CAError("this root CA has no private key")
        return private_key_to_pem(self._key)

    @property
    def can_sign(self) -> bool:
        return self._key is not None

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the DER certificate, for logs and `docker info`."""
        return hashlib.sha256(self.cert_der).hexdigest()

    # -- signing --------------------------------------------------------------------------

    def issue_node_certificate(
        self,
        csr_pem: bytes | str,
        node_id: str,
        role: CertRole | str,
        cluster_id: str,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
        now: datetime | None = None,
        validity: timedelta = NODE_CERT_VALIDITY,
    ) -> IssuedCertificate:
        """Sign a node's CSR. Node ID, role and cluster come from the caller (the CA server,
        from the store), never from the CSR's subject: the requester proves only that it holds
        the key.

        The node ID and the role are also written as DNS SANs. That lets a client verify a
        server's hostname against "swarm-manager" (any manager will do, but a worker cannot
        pose as one) or against a node ID (exactly that Raft peer); see `tls.client_context`.
        Role names and other node IDs among `dns_names` are therefore dropped
        (`identity.is_reserved_name`); callers taking names from a requester refuse them first.
        """
        csr = load_csr(csr_pem)
        role = CertRole(role)
        if role not in NODE_ROLES:
            raise CAError(f"role {role} is not a node role; use issue_client_certificate")
        return self._sign(
            public_key=csr.public_key(),
            common_name=node_id,
            role=role,
            cluster_id=cluster_id,
            dns_names=[node_id, role.value, *address_names(dns_names, node_id)],
            ip_addresses=ip_addresses,
            server_auth=True,
            now=now,
            validity=validity,
        )

    def issue_client_certificate(
        self,
        csr_pem: bytes | str,
        client_name: str,
        cluster_id: str,
        now: datetime | None = None,
        validity: timedelta = NODE_CERT_VALIDITY,
    ) -> IssuedCertificate:
        """Sign an operator's CSR for the Docker-compatible API: client auth only, role
        "swarm-client", so the cert opens the API but not node-to-node RPC."""
        csr = load_csr(csr_pem)
        return self._sign(
            public_key=csr.public_key(),
            common_name=client_name,
            role=CertRole.CLIENT,
            cluster_id=cluster_id,
            dns_names=(),
            ip_addresses=(),
            server_auth=False,
            now=now,
            validity=validity,
        )

    def issue_api_server_certificate(
        self,
        public_key: object,
        node_id: str,
        cluster_id: str,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
        now: datetime | None = None,
        validity: timedelta = NODE_CERT_VALIDITY,
    ) -> IssuedCertificate:
        """Sign a manager's Docker API serving key (see `CertRole.API_SERVER`): the host's
        address SANs, which the Docker CLI checks, but neither the node ID nor a role name as a
        SAN, no client-auth usage and a role no authorization accepts."""
        check_key_strength(public_key, InvalidCSRError)
        return self._sign(
            public_key=public_key,
            common_name=node_id,
            role=CertRole.API_SERVER,
            cluster_id=cluster_id,
            dns_names=address_names(dns_names, node_id),
            ip_addresses=ip_addresses,
            server_auth=True,
            client_auth=False,
            now=now,
            validity=validity,
        )

    def reissue(
        self,
        cert_pem: bytes | str | x509.Certificate,
        role: CertRole | str | None = None,
        now: datetime | None = None,
        validity: timedelta = NODE_CERT_VALIDITY,
    ) -> IssuedCertificate:
        """Re-sign a certificate this CA issued, same key and SANs, optionally a new role.

        This is how a promotion or demotion takes effect without a new join: the CA already
        knows this key belongs to this node ID (it signed that binding), so no CSR is needed.
        Nodes that prefer a fresh key send a new CSR to `issue_node_certificate` instead.
        """
        old = load_certificate(cert_pem)
        self.verify(old, now=None)  # any time: renewing an expired cert is allowed
        ident = identity_from_cert(old)
        new_role = CertRole(role) if role is not None else ident.role
        if (ident.role in NODE_ROLES) != (new_role in NODE_ROLES):
            raise CAError(f"cannot turn a {ident.role} certificate into a {new_role} one")
        try:
            san = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = address_names(san.get_values_for_type(x509.DNSName), ident.node_id)
            ips = list(san.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            dns, ips = [], []
        if new_role in NODE_ROLES:
            dns = [ident.node_id, new_role.value, *dns]
        check_key_strength(old.public_key(), InvalidCertificateError)
        return self._sign(
            public_key=old.public_key(),
            common_name=ident.node_id,
            role=new_role,
            cluster_id=ident.cluster_id,
            dns_names=dns,
            ip_addresses=ips,
            server_auth=new_role in NODE_ROLES,
            now=now,
            validity=validity,
        )

    def verify(self, cert_pem: bytes | str | x509.Certificate, now: datetime | None) -> None:
        """Raise InvalidCertificateError unless this CA signed `cert` (and, if `now` is given,
        it is valid at `now`)."""
        cert = load_certificate(cert_pem)
        try:
            cert.verify_directly_issued_by(self._cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise InvalidCertificateError("certificate was not issued by this root CA") from exc
        if now is not None:
            moment = as_utc(now)
            if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
                raise InvalidCertificateError(
                    f"certificate is valid from {cert.not_valid_before_utc.isoformat()} "
                    f"to {cert.not_valid_after_utc.isoformat()}, not at {moment.isoformat()}"
                )

    def _sign(
        self,
        *,
        public_key: object,
        common_name: str,
        role: CertRole,
        cluster_id: str,
        dns_names: Iterable[str],
        ip_addresses: Iterable[str | ipaddress.IPv4Address | ipaddress.IPv6Address],
        server_auth: bool,
        now: datetime | None,
        validity: timedelta,
        client_auth: bool = True,
    ) -> IssuedCertificate:
        if self._key is None:
            raise CAError("this root CA has no private key and cannot sign certificates")
        if not common_name:
            raise CAError("node ID (common name) must not be empty")
        if not cluster_id:
            raise CAError("cluster ID must not be empty")
        if validity < MIN_NODE_CERT_VALIDITY:
            raise CAError(
                f"certificate validity {validity} is shorter than {MIN_NODE_CERT_VALIDITY}"
            )
        now = as_utc(now)
        not_before = now - CERT_BACKDATE
        # A leaf that outlives its root would be refused by every verifier anyway; clamp so
        # renewal timing is computed from the real usable lifetime.
        not_after = min(now + validity, self._cert.not_valid_after_utc)
        if not_after <= now:
            raise CAError("root CA certificate has expired; rotate the root before issuing")

        sans: list[x509.GeneralName] = []
        seen: set[str] = set()
        for name in dns_names:
            if name and name not in seen:
                seen.add(name)
                sans.append(x509.DNSName(name))
        for ip in ip_addresses:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError as exc:
                raise CAError(f"invalid IP address for certificate: {ip!r}") from exc
            if str(addr) not in seen:
                seen.add(str(addr))
                sans.append(x509.IPAddress(addr))

        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else []
        if server_auth:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(_serial())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    # RSA key exchange needs it; harmless for EC keys.
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key),  # type: ignore[arg-type]
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self._cert.public_key()  # type: ignore[arg-type]
                ),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(cert_pem=certificate_to_pem(cert), ca_cert_pem=self.cert_pem)


def _validate_ca(cert: x509.Certificate, key: PrivateKey | None) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise InvalidCAError(
            "certificate is not a CA: it has no basicConstraints extension"
        ) from None
    if not bc.ca:
        raise InvalidCAError("certificate is not a CA: basicConstraints CA is false")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            raise InvalidCAError("CA certificate's key usage does not allow signing certificates")
    except x509.ExtensionNotFound:
        pass  # RFC 5280 permits omitting key usage; then all usages are allowed.
    if cert.issuer != cert.subject:
        # Intermediates would need the chain shipped to every node and PARTIAL_CHAIN trust in
        # OpenSSL; not supported yet, so say so instead of failing at the first handshake.
        raise InvalidCAError("CA certificate must be a self-signed root (issuer != subject)")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise InvalidCAError("CA certificate's self-signature does not verify") from exc
    check_key_strength(cert.public_key(), InvalidCAError)
    if key is not None and not key_matches_certificate(key, cert):
        raise InvalidCAError("CA private key does not match the CA certificate")
