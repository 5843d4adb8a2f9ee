"""A worker's certificate checks through `ssl` alone (ca/sslfacts.py): the same answers as
`cryptography`, the same refusals. That a worker-only agent never imports `cryptography` is
checked in test_metrics_server.py, with the other modules it must not load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from swarmkit_py.ca import (
    CertRole,
    InvalidCertificateError,
    NodeIdentity,
    RootCA,
    generate_key_and_csr,
    identity_from_cert,
    load_certificate,
    load_private_key,
    renewal_time,
)
from swarmkit_py.ca.certs import certificate_to_der
from swarmkit_py.ca.sslfacts import decode, facts, pair_error, verify_issued

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def root() -> RootCA:
    return RootCA.create(now=NOW)


@pytest.fixture(scope="module")
def node(root):
    key_pem, csr_pem = generate_key_and_csr("ignored")
    issued = root.issue_node_certificate(csr_pem, "n1", CertRole.WORKER, "c1", now=NOW,
                                         validity=timedelta(days=90))
    return issued.cert_pem, key_pem


def test_decoded_certificate_says_what_cryptography_says(node):
    cert_pem, _ = node
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


def test_renewed_certificate_is_checked_against_the_ca_and_the_key(root, node):
    cert_pem, key_pem = node
    # valid from 2030 on: "did the CA sign it" and not the clock, as RootCA.verify(now=None)
    assert facts(cert_pem).not_valid_before_utc > datetime.now(UTC)
    assert identity_from_cert(verify_issued(cert_pem, key_pem, root.cert_pem)).node_id == "n1"
    other_key, csr = generate_key_and_csr("x")
    foreign = RootCA.create(now=NOW).issue_node_certificate(csr, "n1", CertRole.WORKER, "c1", now=NOW)
    with pytest.raises(InvalidCertificateError, match="not issued by this root CA"):
        verify_issued(foreign.cert_pem, other_key, root.cert_pem)
    with pytest.raises(InvalidCertificateError, match="does not match"):
        verify_issued(cert_pem, other_key, root.cert_pem)


def test_an_encrypted_key_is_refused_not_prompted_for(node):
    cert_pem, key_pem = node
    sealed = load_private_key(key_pem).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    assert pair_error(cert_pem, key_pem) is None
    assert pair_error(cert_pem, sealed) == "the private key is encrypted"
