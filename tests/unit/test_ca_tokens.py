"""Join tokens: Swarm's format, parsing errors, CA digest pinning, secret comparison."""

from __future__ import annotations

import hashlib
import re

import pytest

from swarmkit_py.ca import (
    TOKEN_PATTERN,
    CADigestMismatchError,
    CertRole,
    InvalidJoinTokenError,
    RootCA,
    ca_digest,
    ca_digest_matches,
    generate_join_token,
    parse_join_token,
    require_ca_digest,
    role_for_token,
    secrets_match,
)
from swarmkit_py.ca.tokens import base36

SWARM_RE = re.compile(r"^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$")
D = "0" + "a" * 49  # a well-formed digest
S = "0" + "b" * 24  # a well-formed secret


@pytest.fixture(scope="module")
def root() -> RootCA:
    return RootCA.create()


@pytest.fixture(scope="module")
def other_root() -> RootCA:
    return RootCA.create()


def test_token_has_swarm_format(root):
    for _ in range(50):
        token = generate_join_token(root.cert_pem)
        assert SWARM_RE.match(token), token
        assert TOKEN_PATTERN.match(token)


def test_digest_is_sha256_of_der_in_zero_padded_base36(root):
    value = int.from_bytes(hashlib.sha256(root.cert_der).digest(), "big")
    digest = ca_digest(root.cert_pem)
    assert len(digest) == 50
    assert int(digest, 36) == value
    assert ca_digest(root.cert_der) == digest == ca_digest(root.certificate)
    assert generate_join_token(root.cert_pem).split("-")[2] == digest


def test_secret_is_the_random_bytes_in_base36_padded_to_25(root):
    token = generate_join_token(root.cert_pem, randbytes=lambda n: b"\x00" * (n - 1) + b"\x24")
    assert token.endswith("-" + "0" * 23 + "10")
    biggest = generate_join_token(root.cert_pem, randbytes=lambda n: b"\xff" * n)
    assert int(biggest.split("-")[3], 36) == 2**128 - 1
    assert SWARM_RE.match(biggest)


def test_base36_padding_and_bounds():
    assert base36(0, 5) == "00000"
    assert base36(35, 2) == "0z"
    assert base36(2**256 - 1, 50)[0] != "0"  # 50 digits is exactly enough
    with pytest.raises(ValueError):
        base36(36**3, 3)


def test_tokens_differ_and_roundtrip_through_parse(root):
    a, b = generate_join_token(root.cert_pem), generate_join_token(root.cert_pem)
    assert a != b
    parsed = parse_join_token(a)
    assert str(parsed) == a
    assert parsed.ca_digest == ca_digest(root.cert_pem)
    assert parsed.secret not in repr(parsed)
    assert parse_join_token(f"  {a}\n") == parsed  # pasted with whitespace


def test_joining_node_detects_a_ca_digest_mismatch(root, other_root):
    token = generate_join_token(root.cert_pem)
    assert ca_digest_matches(token, root.cert_pem)
    assert ca_digest_matches(token, root.cert_pem.decode())
    assert not ca_digest_matches(token, other_root.cert_pem)
    assert not ca_digest_matches(
        token, b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
    )
    require_ca_digest(token, root.cert_pem)
    with pytest.raises(CADigestMismatchError, match="does not match the join token"):
        require_ca_digest(token, other_root.cert_pem)
    # the named CA with another after it is not the named CA: a join would trust both
    assert not ca_digest_matches(token, root.cert_pem + other_root.cert_pem)
    with pytest.raises(CADigestMismatchError, match="not a PEM of exactly one certificate"):
        require_ca_digest(token, root.cert_pem + other_root.cert_pem)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "invalid join token: token is empty"),
        ("hello", "invalid join token: token must start with SWMTKN-"),
        ("SWMTKN-1-abc", "invalid join token: expected 4 dash-separated parts"),
        (f"SWMTKN-1-{D}-{S}-x", "expected 4 dash-separated parts"),
        (f"SWMTKN-2-{D}-{S}", "unsupported token version '2'"),
        (f"SWMTKN-1-{D[:-1]}-{S}", "CA digest must be 50 characters, got 49"),
        (f"SWMTKN-1-{D}-{S[:-1]}", "secret must be 25 characters, got 24"),
        (f"SWMTKN-1-{D.upper()}-{S}", "CA digest must contain only 0-9 and a-z"),
        (f"SWMTKN-1-{D}-{S[:-1]}_", "secret must contain only 0-9 and a-z"),
        (f"SWMTKN-1-{'z' * 50}-{S}", "CA digest is out of range"),
        (f"SWMTKN-1-{D}-{'z' * 25}", "secret is out of range"),
        (f"swmtkn-1-{D}-{S}", "must start with SWMTKN-"),
    ],
)
def test_malformed_tokens_have_clear_messages(token, message):
    with pytest.raises(InvalidJoinTokenError) as info:
        parse_join_token(token)
    assert str(info.value).startswith("invalid join token: ")
    assert message in str(info.value)
    with pytest.raises(InvalidJoinTokenError):
        ca_digest_matches(token, b"")


def test_well_formed_token_parses_and_errors_never_echo_the_secret():
    assert parse_join_token(f"SWMTKN-1-{D}-{S}").secret == S
    secret = "s" * 24 + "_"
    with pytest.raises(InvalidJoinTokenError) as info:
        parse_join_token(f"SWMTKN-1-{D}-{secret}")
    assert secret not in str(info.value)


def test_non_string_token_is_refused():
    with pytest.raises(InvalidJoinTokenError, match="expected a string"):
        parse_join_token(None)  # type: ignore[arg-type]


def test_secret_comparison_and_role_lookup(root, other_root):
    worker = generate_join_token(root.cert_pem)
    manager = generate_join_token(root.cert_pem)
    tokens = {CertRole.WORKER: worker, CertRole.MANAGER: manager}
    assert secrets_match(worker, worker)
    assert not secrets_match(worker, manager)
    assert not secrets_match("garbage", worker)
    # same secret, digest of another CA: not the same token
    digest_swapped = f"SWMTKN-1-{ca_digest(other_root.cert_pem)}-{worker.split('-')[3]}"
    assert not secrets_match(digest_swapped, worker)
    assert role_for_token(worker, tokens) is CertRole.WORKER
    assert role_for_token(manager, tokens) is CertRole.MANAGER
    assert role_for_token(digest_swapped, tokens) is None
    # rotation: the old worker token no longer admits anyone, the manager one still works
    rotated = {**tokens, CertRole.WORKER: generate_join_token(root.cert_pem)}
    assert role_for_token(worker, rotated) is None
    assert role_for_token(manager, rotated) is CertRole.MANAGER
