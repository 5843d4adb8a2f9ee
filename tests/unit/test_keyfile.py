"""ca.keyfile: the node key sealed by auto-lock, its password in the Raft keyring under the
unlock key, and the Docker API's own key pair that no authorization accepts."""

from __future__ import annotations

import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from swarmkit_py.ca import (
    CertRole,
    RootCA,
    client_context,
    generate_key_and_csr,
    identity_from_cert,
    server_context,
)
from swarmkit_py.ca.errors import InvalidCertificateError
from swarmkit_py.ca.files import NODE_KEY_FILE, load_node_credentials, save_node_credentials
from swarmkit_py.ca.keyfile import (
    NodeCredentials,
    NodeKeySealedError,
    api_credentials_current,
    issue_api_credentials,
    load_api_credentials,
)
from swarmkit_py.raft.storage import InvalidUnlockKeyError, Keyring, new_key

PLAIN_HEADERS = (b"-----BEGIN PRIVATE KEY-----", b"-----BEGIN EC PRIVATE KEY-----")
NODE = "n" * 25


@pytest.fixture(scope="module")
def ca() -> RootCA:
    return RootCA.create()


def node_dir(tmp_path, ca):
    key, csr = generate_key_and_csr(NODE)
    cert = ca.issue_node_certificate(csr, NODE, CertRole.MANAGER, "c1", dns_names=["host1"],
                                     ip_addresses=["127.0.0.1", "10.0.0.5"]).cert_pem
    d = tmp_path / "certs"
    save_node_credentials(d, cert, key)
    return d, cert, key


def scalar(key_pem: bytes) -> bytes:
    k = serialization.load_pem_private_key(key_pem, password=None)
    return k.private_numbers().private_value.to_bytes(32, "big")


def test_sealed_on_disk_opened_only_with_the_password(tmp_path, ca):
    d, cert, key = node_dir(tmp_path, ca)
    creds = NodeCredentials(d)
    password = new_key()
    assert creds.seal(password) and creds.sealed
    raw = (d / NODE_KEY_FILE).read_bytes()
    assert not any(h in raw for h in PLAIN_HEADERS) and scalar(key) not in raw
    assert (d / NODE_KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert creds.load() == (cert, creds.load()[1]) and scalar(creds.load()[1]) == scalar(key)
    # Another process (a restarted agent) without the password cannot use it...
    fresh = NodeCredentials(d)
    with pytest.raises(NodeKeySealedError, match="unlock this manager"):
        fresh.load()
    with pytest.raises(InvalidCertificateError, match="sealed"):
        load_node_credentials(d)
    with pytest.raises(InvalidCertificateError):
        fresh.unlock(new_key())
    fresh.unlock(password)
    assert scalar(fresh.load()[1]) == scalar(key)
    # A renewal's save keeps it sealed; sealing with None writes it in clear again.
    fresh.save(cert, fresh.load()[1])
    assert fresh.sealed
    assert fresh.seal(None) and not fresh.sealed and not fresh.seal(None)
    assert scalar((d / NODE_KEY_FILE).read_bytes()) == scalar(key)


def test_the_password_rides_in_the_keyring_under_the_unlock_key(tmp_path):
    raft = tmp_path / "raft"
    raft.mkdir()
    ring = Keyring.open(raft)
    password = ring.node_key_password(create=True)
    assert Keyring.open(raft).node_key_password() == password  # local KEK: the disk opens it
    unlock, rotated = new_key(), new_key()
    ring.set_kek(unlock)
    with pytest.raises(InvalidUnlockKeyError):
        Keyring.open(raft, new_key())
    assert Keyring.open(raft, unlock).node_key_password() == password
    ring.set_kek(rotated)  # rotating the unlock key re-wraps it with the data keys, in one write
    with pytest.raises(InvalidUnlockKeyError):
        Keyring.open(raft, unlock)
    assert Keyring.open(raft, rotated).node_key_password() == password
    assert password.hex() not in (raft / "deks.json").read_text()


def test_api_key_pair_serves_the_api_but_is_nobodys_identity(tmp_path, ca):
    d, cert, _ = node_dir(tmp_path, ca)
    assert not api_credentials_current(d, ca, cert)
    issue_api_credentials(d, ca, cert)
    assert api_credentials_current(d, ca, cert)
    assert not api_credentials_current(d, RootCA.create(), cert)  # a rotated root: re-issue
    api_cert, api_key = load_api_credentials(d)
    ident = identity_from_cert(api_cert)
    assert ident.role is CertRole.API_SERVER and ident.node_id == NODE

    c = x509.load_pem_x509_certificate(api_cert)
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"host1"}  # no node id, no role name
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.0.0.5"}
    eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u.dotted_string for u in eku] == ["1.3.6.1.5.5.7.3.1"]  # server auth only
    # It serves TLS to a client that trusts the cluster CA (the Docker CLI)...
    node_cert, node_key = load_node_credentials(d)
    handshake(server_context(api_cert, api_key, ca.cert_pem), client_context(ca.cert_pem, node_cert, node_key,
                                                                             check_hostname=False))
    # ...but as a *client* certificate it fails the handshake of any cluster server.
    with pytest.raises(ssl.SSLError, match="unsuitable certificate purpose"):
        handshake(server_context(node_cert, node_key, ca.cert_pem),
                  client_context(ca.cert_pem, api_cert, api_key, check_hostname=False))


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    """A TLS handshake in memory; raises the SSLError either side hits."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    srv = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    cli = client_ctx.wrap_bio(c_in, c_out)
    done = {"srv": False, "cli": False}
    for _ in range(10):
        for name, obj in (("cli", cli), ("srv", srv)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            cli.write(b"x")  # TLS 1.3: the server checks the client's certificate after the client is done
            s_in.write(c_out.read())
            srv.read(1)
            return
    raise AssertionError("handshake did not finish")
