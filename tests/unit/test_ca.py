"""Root CA, node certificates, identity, files on disk, renewal and the client bundle."""

from __future__ import annotations

import os
import random
import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from swarmkit_py.ca import (
    CERT_BACKDATE,
    CAError,
    CertRole,
    InvalidCAError,
    InvalidCertificateError,
    InvalidCSRError,
    NodeIdentity,
    PermissionDeniedError,
    RootCA,
    authorize,
    generate_key_and_csr,
    identity_from_cert,
    issue_client_bundle,
    load_certificate,
    load_node_credentials,
    load_private_key,
    needs_renewal,
    renewal_fraction,
    renewal_time,
    save_node_credentials,
)
from swarmkit_py.ca.certs import certificate_to_der, private_key_to_pem
from swarmkit_py.ca.files import ROOT_CA_CERT_FILE, ROOT_CA_KEY_FILE, write_atomic
from swarmkit_py.ca.sslfacts import decode, facts, pair_error, verify_issued

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def root() -> RootCA:
    return RootCA.create(now=NOW)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def sans(cert: x509.Certificate):
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    ]


def operator_ca(
    *,
    ca: bool = True,
    key_cert_sign: bool = True,
    key=None,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=3650),
    issuer_name: str | None = None,
):
    """Build CA material the way an operator's own tooling would (RSA, no swarm conventions)."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Acme Ops Root")])
    issuer = (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]) if issuer_name else name
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), private_key_to_pem(key)


# -- root CA ------------------------------------------------------------------------------


def test_created_root_is_a_p256_ca_named_swarm_ca_for_twenty_years(root):
    cert = root.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "swarm-ca"
    assert cert.issuer == cert.subject
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    lifetime = cert.not_valid_after_utc - NOW
    assert timedelta(days=365 * 20 - 1) < lifetime <= timedelta(days=365 * 20 + 5)
    assert root.can_sign


def test_root_ca_save_and_load_roundtrip_with_private_key_files(tmp_path, root):
    d = tmp_path / "certs"
    root.save(d)
    assert mode(d / ROOT_CA_KEY_FILE) == 0o600
    assert mode(d) == 0o700
    loaded = RootCA.load(d, now=NOW)
    assert loaded.cert_der == root.cert_der
    assert loaded.can_sign
    assert loaded.key_pem == root.key_pem
    # no leftovers of the atomic write
    assert sorted(p.name for p in d.iterdir()) == sorted([ROOT_CA_CERT_FILE, ROOT_CA_KEY_FILE])


def test_worker_copy_of_root_has_no_key_and_cannot_sign(tmp_path, root):
    root.without_key().save(tmp_path)
    assert not (tmp_path / ROOT_CA_KEY_FILE).exists()
    verify_only = RootCA.load(tmp_path, now=NOW)
    assert not verify_only.can_sign
    _, csr = generate_key_and_csr()
    with pytest.raises(CAError, match="no private key"):
        verify_only.issue_node_certificate(csr, "n1", CertRole.WORKER, "c1", now=NOW)


def test_key_file_is_0600_even_with_a_permissive_umask(tmp_path, root):
    old = os.umask(0)
    try:
        root.save(tmp_path / "a")
        write_atomic(tmp_path / "a" / "other.key", b"secret")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a" / ROOT_CA_KEY_FILE) == 0o600
    assert mode(tmp_path / "a" / "other.key") == 0o600


def test_atomic_write_replaces_content(tmp_path):
    target = tmp_path / "f.key"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.key"]


def test_operator_supplied_rsa_ca_is_accepted_and_signs(root):
    cert_pem, key_pem = operator_ca()
    ca = RootCA.from_pem(cert_pem, key_pem, now=NOW)
    key_pem_node, csr = generate_key_and_csr()
    issued = ca.issue_node_certificate(csr, "node1", CertRole.MANAGER, "clusterA", now=NOW)
    ca.verify(issued.cert_pem, now=NOW)
    with pytest.raises(InvalidCertificateError, match="not issued by this root CA"):
        root.verify(issued.cert_pem, now=NOW)


def test_non_ca_certificate_is_refused_as_root(root):
    key_pem, csr = generate_key_and_csr()
    node_cert = root.issue_node_certificate(csr, "n1", CertRole.MANAGER, "c1", now=NOW).cert_pem
    with pytest.raises(InvalidCAError, match="not a CA"):
        RootCA.from_pem(node_cert, key_pem, now=NOW)
    cert_pem, key_pem = operator_ca(ca=False, key_cert_sign=False)
    with pytest.raises(InvalidCAError, match="not a CA"):
        RootCA.from_pem(cert_pem, key_pem, now=NOW)


def test_operator_ca_refusals_name_the_problem():
    cert_pem, _ = operator_ca()
    _, other_key = operator_ca()
    with pytest.raises(InvalidCAError, match="does not match"):
        RootCA.from_pem(cert_pem, other_key, now=NOW)
    expired, key = operator_ca(
        not_after=NOW - timedelta(days=1), not_before=NOW - timedelta(days=9)
    )
    with pytest.raises(InvalidCAError, match="expired"):
        RootCA.from_pem(expired, key, now=NOW)
    no_sign, key = operator_ca(key_cert_sign=False)
    with pytest.raises(InvalidCAError, match="key usage"):
        RootCA.from_pem(no_sign, key, now=NOW)
    intermediate, key = operator_ca(issuer_name="Someone Else")
    with pytest.raises(InvalidCAError, match="self-signed"):
        RootCA.from_pem(intermediate, key, now=NOW)
    with pytest.raises(InvalidCAError, match="root CA certificate"):
        RootCA.from_pem(b"not a certificate", None, now=NOW)
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak, key = operator_ca(key=weak_key)
    with pytest.raises(InvalidCAError, match="too weak"):
        RootCA.from_pem(weak, key, now=NOW)


# -- node certificates --------------------------------------------------------------------


def test_csr_to_certificate_carries_node_id_role_cluster_and_sans(root):
    key_pem, csr = generate_key_and_csr()
    issued = root.issue_node_certificate(
        csr,
        node_id="abcdefghijklmnopqrstuvwxy",
        role=CertRole.WORKER,
        cluster_id="cluster123",
        dns_names=["host1.example"],
        ip_addresses=["10.0.0.5", "::1"],
        now=NOW,
    )
    cert = load_certificate(issued.cert_pem)
    subj = cert.subject
    assert subj.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "abcdefghijklmnopqrstuvwxy"
    assert subj.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "swarm-worker"
    assert subj.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "cluster123"
    dns, ips = sans(cert)
    assert dns == ["abcdefghijklmnopqrstuvwxy", "swarm-worker", "host1.example"]
    assert ips == ["10.0.0.5", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc == NOW + timedelta(days=90)
    assert cert.not_valid_before_utc == NOW - CERT_BACKDATE
    assert issued.ca_cert_pem == root.cert_pem
    root.verify(cert, now=NOW)
    # the key never left the node: the cert certifies the node's public key
    node_key = serialization.load_pem_private_key(key_pem, None)
    assert cert.public_key().public_numbers() == node_key.public_key().public_numbers()


def test_csr_subject_is_ignored_the_ca_decides_the_role(root):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "evil"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "swarm-manager"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    issued = root.issue_node_certificate(csr, "n7", "swarm-worker", "c1", now=NOW)
    assert identity_from_cert(issued.cert_pem) == NodeIdentity("n7", CertRole.WORKER, "c1")


def test_validity_is_configurable_and_clamped_to_the_root(root):
    _, csr = generate_key_and_csr()
    short = root.issue_node_certificate(
        csr, "n1", CertRole.WORKER, "c", now=NOW, validity=timedelta(hours=6)
    )
    assert load_certificate(short.cert_pem).not_valid_after_utc == NOW + timedelta(hours=6)
    young_root = RootCA.create(now=NOW, validity=timedelta(days=30))
    clamped = young_root.issue_node_certificate(csr, "n1", CertRole.WORKER, "c", now=NOW)
    assert (
        load_certificate(clamped.cert_pem).not_valid_after_utc
        == young_root.certificate.not_valid_after_utc
    )
    with pytest.raises(CAError, match="shorter than"):
        root.issue_node_certificate(
            csr, "n1", CertRole.WORKER, "c", now=NOW, validity=timedelta(seconds=5)
        )


def test_bad_csrs_and_bad_requests_are_refused(root):
    _, csr = generate_key_and_csr()
    with pytest.raises(InvalidCSRError, match="cannot parse"):
        root.issue_node_certificate(b"garbage", "n1", CertRole.WORKER, "c", now=NOW)
    # flip a byte in the signature: the requester no longer proves key possession
    der = x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER)
    tampered = der[:-3] + bytes([der[-3] ^ 0x01]) + der[-2:]
    with pytest.raises(InvalidCSRError):
        root.issue_node_certificate(tampered, "n1", CertRole.WORKER, "c", now=NOW)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(weak, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(InvalidCSRError, match="too weak"):
        root.issue_node_certificate(weak_csr, "n1", CertRole.WORKER, "c", now=NOW)
    with pytest.raises(ValueError):
        root.issue_node_certificate(csr, "n1", "swarm-admin", "c", now=NOW)
    with pytest.raises(CAError, match="not a node role"):
        root.issue_node_certificate(csr, "n1", CertRole.CLIENT, "c", now=NOW)
    with pytest.raises(CAError, match="empty"):
        root.issue_node_certificate(csr, "", CertRole.WORKER, "c", now=NOW)
    with pytest.raises(CAError, match="invalid IP"):
        root.issue_node_certificate(
            csr, "n1", CertRole.WORKER, "c", ip_addresses=["10.0.0.300"], now=NOW
        )


def test_role_change_reissues_same_key_new_role(root):
    _, csr = generate_key_and_csr()
    worker = root.issue_node_certificate(
        csr, "n1", CertRole.WORKER, "c1", ip_addresses=["10.0.0.9"], dns_names=["h1"], now=NOW
    )
    later = NOW + timedelta(days=10)
    manager = root.reissue(worker.cert_pem, role=CertRole.MANAGER, now=later)
    old, new = load_certificate(worker.cert_pem), load_certificate(manager.cert_pem)
    assert identity_from_cert(new) == NodeIdentity("n1", CertRole.MANAGER, "c1")
    assert new.public_key().public_numbers() == old.public_key().public_numbers()
    assert sans(new) == (["n1", "swarm-manager", "h1"], ["10.0.0.9"])
    assert new.not_valid_after_utc == later + timedelta(days=90)
    assert new.serial_number != old.serial_number
    # a plain renewal keeps the role
    assert (
        identity_from_cert(root.reissue(manager.cert_pem, now=later).cert_pem).role is CertRole.MANAGER
    )
    # a certificate from another CA is not ours to re-sign
    other = RootCA.create(now=NOW)
    foreign = other.issue_node_certificate(csr, "n1", CertRole.WORKER, "c1", now=NOW)
    with pytest.raises(InvalidCertificateError, match="not issued by this root CA"):
        root.reissue(foreign.cert_pem, role=CertRole.MANAGER, now=later)


# -- identity -----------------------------------------------------------------------------


def test_identity_roundtrip_from_pem_and_der(root):
    _, csr = generate_key_and_csr()
    for role in (CertRole.MANAGER, CertRole.WORKER):
        issued = root.issue_node_certificate(csr, f"id-{role}", role, "clusterX", now=NOW)
        der = certificate_to_der(load_certificate(issued.cert_pem))
        expected = NodeIdentity(node_id=f"id-{role}", role=role, cluster_id="clusterX")
        assert identity_from_cert(issued.cert_pem) == expected
        assert identity_from_cert(issued.cert_pem.decode()) == expected
        assert identity_from_cert(der) == expected
    assert identity_from_cert(issued.cert_pem).is_manager is False


def test_identity_from_a_non_swarm_certificate_is_refused(root):
    with pytest.raises(InvalidCertificateError, match="organizational unit"):
        identity_from_cert(root.cert_pem)  # CN only
    with pytest.raises(InvalidCertificateError, match="cannot parse"):
        identity_from_cert(b"\x30\x03\x02\x01")


def test_authorize_by_role_and_cluster():
    worker = NodeIdentity("w1", CertRole.WORKER, "c1")
    manager = NodeIdentity("m1", CertRole.MANAGER, "c1")
    authorize(manager, [CertRole.MANAGER], cluster_id="c1")
    with pytest.raises(
        PermissionDeniedError, match="w1 has role swarm-worker; raft requires swarm-manager"
    ):
        authorize(worker, [CertRole.MANAGER], action="raft")
    with pytest.raises(PermissionDeniedError, match="belongs to cluster c1, not c2"):
        authorize(manager, ["swarm-manager"], cluster_id="c2")


# -- node credentials on disk -------------------------------------------------------------


def test_node_credentials_saved_with_private_key_and_checked_on_load(tmp_path, root):
    key_pem, csr = generate_key_and_csr()
    issued = root.issue_node_certificate(csr, "n1", CertRole.WORKER, "c1", now=NOW)
    save_node_credentials(tmp_path, issued.cert_pem, key_pem)
    assert mode(tmp_path / "swarm-node.key") == 0o600
    assert load_node_credentials(tmp_path) == (issued.cert_pem, key_pem)
    other_key, _ = generate_key_and_csr()
    save_node_credentials(tmp_path, issued.cert_pem, other_key)
    with pytest.raises(InvalidCertificateError, match="does not match"):
        load_node_credentials(tmp_path)


# -- renewal ------------------------------------------------------------------------------


def test_renewal_fraction_is_between_half_and_eighty_percent_and_seedable():
    draws = [renewal_fraction(random.Random(seed)) for seed in range(200)]
    assert all(0.5 <= f <= 0.8 for f in draws)
    assert min(draws) < 0.55 and max(draws) > 0.75  # actually spread, not a constant
    assert renewal_fraction(random.Random(7)) == renewal_fraction(random.Random(7))


def test_needs_renewal_timing(root):
    _, csr = generate_key_and_csr()
    cert = root.issue_node_certificate(csr, "n1", CertRole.WORKER, "c1", now=NOW).cert_pem
    lifetime = timedelta(days=90) + CERT_BACKDATE
    start = NOW - CERT_BACKDATE
    at = renewal_time(cert, 0.5)
    assert at == start + lifetime / 2
    assert not needs_renewal(cert, NOW, 0.5)
    assert not needs_renewal(cert, at - timedelta(seconds=1), 0.5)
    assert needs_renewal(cert, at, 0.5)
    assert not needs_renewal(cert, start + lifetime * 0.79, 0.8)
    assert needs_renewal(cert, start + lifetime * 0.81, 0.8)
    assert needs_renewal(cert, NOW + timedelta(days=365), 0.8)  # expired: renew at once
    # naive datetimes are taken as UTC rather than crashing in a comparison
    assert needs_renewal(cert, (at + timedelta(minutes=1)).replace(tzinfo=None), 0.5)
    with pytest.raises(ValueError):
        needs_renewal(cert, NOW, 1.5)


def test_role_change_triggers_renewal_at_once(root):
    _, csr = generate_key_and_csr()
    cert = root.issue_node_certificate(csr, "n1", CertRole.WORKER, "c1", now=NOW).cert_pem
    assert not needs_renewal(cert, NOW, 0.8, desired_role=CertRole.WORKER)
    assert needs_renewal(cert, NOW, 0.8, desired_role="swarm-manager")


# -- client bundle ------------------------------------------------------------------------


def test_client_bundle_files_permissions_and_client_auth_cert(tmp_path, root):
    d = issue_client_bundle(root, tmp_path / "bundle", "admin", "c1", now=NOW)
    assert sorted(p.name for p in d.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert mode(d / "key.pem") == 0o600
    assert (d / "ca.pem").read_bytes() == root.cert_pem
    cert = load_certificate((d / "cert.pem").read_bytes())
    root.verify(cert, now=NOW)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert identity_from_cert(cert) == NodeIdentity("admin", CertRole.CLIENT, "c1")
    key = serialization.load_pem_private_key((d / "key.pem").read_bytes(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    # a client certificate can be renewed but never becomes a node certificate
    with pytest.raises(CAError, match="cannot turn"):
        root.reissue(cert, role=CertRole.MANAGER, now=NOW)


def test_role_names_and_other_node_ids_never_become_address_sans():
    """Issue 9 hole 4: a certificate's DNS SANs say who a node is; a worker whose old
    certificate carried "swarm-manager" or another node's id loses them at renewal."""
    from cryptography import x509 as _x509

    from swarmkit_py.ca import RootCA, generate_key_and_csr
    from swarmkit_py.ca.identity import CertRole as _Role

    ca = RootCA.create()
    me, other = "a" * 25, "b" * 25
    key, csr = generate_key_and_csr(me)
    spoofed = ca._sign(public_key=_x509.load_pem_x509_csr(csr).public_key(), common_name=me, role=_Role.WORKER,
                       cluster_id="c", dns_names=[me, "swarm-worker", "swarm-manager", other, "SWARM-MANAGER.", "host.lan"],
                       ip_addresses=[], server_auth=True, now=None, validity=__import__("datetime").timedelta(days=1))

    def names(issued):
        ext = issued.certificate.extensions.get_extension_for_class(_x509.SubjectAlternativeName).value
        return ext.get_values_for_type(_x509.DNSName)

    assert names(ca.reissue(spoofed.cert_pem)) == [me, "swarm-worker", "host.lan"]
    fresh = ca.issue_node_certificate(csr, me, _Role.WORKER, "c", dns_names=["swarm-manager", other, "host.lan"])
    assert names(fresh) == [me, "swarm-worker", "host.lan"]


# -- a worker's checks through `ssl` alone (ca/sslfacts.py): the same answers as `cryptography`,
# the same refusals. That a worker-only agent never imports `cryptography` is checked in
# test_metrics_server.py, with the other modules it must not load.


@pytest.fixture(scope="module")
def worker_pair(root):
    key_pem, csr_pem = generate_key_and_csr("ignored")
    issued = root.issue_node_certificate(csr_pem, "n1", CertRole.WORKER, "c1", now=NOW,
                                         validity=timedelta(days=90))
    return issued.cert_pem, key_pem


def test_decoded_certificate_says_what_cryptography_says(worker_pair):
    cert_pem, _ = worker_pair
    c = load_certificate(cert_pem)
    for form in (cert_pem, cert_pem.decode(), certificate_to_der(c)):
        f = facts(form)
        assert f.serial_number == c.serial_number
        assert f.not_valid_before_utc == c.not_valid_before_utc
        assert f.not_valid_after_utc == c.not_valid_after_utc
        assert identity_from_cert(f.decoded) == identity_from_cert(c) == NodeIdentity("n1", CertRole.WORKER, "c1")
        assert renewal_time(f, 0.5) == renewal_time(c, 0.5)
    with pytest.raises(InvalidCertificateError, match="cannot parse"):
        decode(b"-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")


def test_identity_from_a_decoded_subject_refuses_what_the_parsed_one_refuses(root):
    with pytest.raises(InvalidCertificateError, match="organizational unit"):
        identity_from_cert(decode(root.cert_pem))  # CN only
    two_ous = {"subject": ((("commonName", "n1"),), (("organizationalUnitName", "swarm-worker"),),
                           (("organizationalUnitName", "swarm-manager"),), (("organizationName", "c1"),))}
    with pytest.raises(InvalidCertificateError, match="exactly one organizational unit"):
        identity_from_cert(two_ous)


def test_renewed_certificate_is_checked_against_the_ca_and_the_key(root, worker_pair):
    cert_pem, key_pem = worker_pair
    # valid from 2030 on: "did the CA sign it" and not the clock, as RootCA.verify(now=None)
    assert facts(cert_pem).not_valid_before_utc > datetime.now(UTC)
    assert identity_from_cert(verify_issued(cert_pem, key_pem, root.cert_pem)).node_id == "n1"
    other_key, csr = generate_key_and_csr("x")
    foreign = RootCA.create(now=NOW).issue_node_certificate(csr, "n1", CertRole.WORKER, "c1", now=NOW)
    with pytest.raises(InvalidCertificateError, match="not issued by this root CA"):
        verify_issued(foreign.cert_pem, other_key, root.cert_pem)
    with pytest.raises(InvalidCertificateError, match="does not match"):
        verify_issued(cert_pem, other_key, root.cert_pem)


def test_an_encrypted_key_is_refused_not_prompted_for(worker_pair):
    cert_pem, key_pem = worker_pair
    sealed = load_private_key(key_pem).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    assert pair_error(cert_pem, key_pem) is None
    assert pair_error(cert_pem, sealed) == "the private key is encrypted"
