"""Certificates, join tokens and mutual TLS for the cluster (moby/swarmkit's `ca/`).

Building blocks only: no sockets are opened here. The manager's CA server and the joining
node's client use these to issue certificates, check tokens and build TLS contexts.
"""

# Imported on first use (PEP 562), not here: most of these need `cryptography`, which a
# worker-only agent never loads (ca/sslfacts.py says why), and importing any submodule runs
# this file first.
import importlib as _importlib

_WHERE = {
    **dict.fromkeys((
        'CERT_BACKDATE', 'NODE_CERT_VALIDITY', 'ROOT_CA_COMMON_NAME',
        'ROOT_CA_VALIDITY', 'IssuedCertificate', 'RootCA'
    ), 'authority'),
    **dict.fromkeys((
        'issue_client_bundle', 'write_client_bundle'
    ), 'bundle'),
    **dict.fromkeys((
        'csr_for_key', 'generate_key_and_csr', 'key_matches_certificate',
        'load_certificate', 'load_csr', 'load_private_key'
    ), 'certs'),
    **dict.fromkeys((
        'CADigestMismatchError', 'CAError', 'InvalidCAError', 'InvalidCertificateError',
        'InvalidCSRError', 'InvalidJoinTokenError', 'PermissionDeniedError'
    ), 'errors'),
    **dict.fromkeys((
        'load_node_credentials', 'save_node_credentials', 'write_atomic'
    ), 'files'),
    **dict.fromkeys((
        'CertRole', 'NodeIdentity', 'authorize', 'expect_manager', 'identity_from_cert',
        'peer_identity', 'require_manager_cert'
    ), 'identity'),
    **dict.fromkeys((
        'needs_renewal', 'renewal_fraction', 'renewal_time'
    ), 'renewal'),
    **dict.fromkeys((
        'client_context', 'server_context'
    ), 'tls'),
    **dict.fromkeys((
        'TOKEN_PATTERN', 'JoinToken', 'ca_digest', 'ca_digest_matches',
        'generate_join_token', 'parse_join_token', 'require_ca_digest',
        'role_for_token', 'secrets_match'
    ), 'tokens'),
}
"""Which submodule defines each public name."""


def __getattr__(name: str):
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = [
    "CADigestMismatchError",
    "CAError",
    "CERT_BACKDATE",
    "InvalidCAError",
    "InvalidCSRError",
    "InvalidCertificateError",
    "InvalidJoinTokenError",
    "IssuedCertificate",
    "JoinToken",
    "NODE_CERT_VALIDITY",
    "NodeIdentity",
    "PermissionDeniedError",
    "ROOT_CA_COMMON_NAME",
    "ROOT_CA_VALIDITY",
    "CertRole",
    "RootCA",
    "TOKEN_PATTERN",
    "authorize",
    "ca_digest",
    "ca_digest_matches",
    "expect_manager",
    "require_manager_cert",
    "client_context",
    "csr_for_key",
    "generate_join_token",
    "generate_key_and_csr",
    "identity_from_cert",
    "issue_client_bundle",
    "key_matches_certificate",
    "load_certificate",
    "load_csr",
    "load_node_credentials",
    "load_private_key",
    "needs_renewal",
    "parse_join_token",
    "peer_identity",
    "renewal_fraction",
    "renewal_time",
    "require_ca_digest",
    "role_for_token",
    "save_node_credentials",
    "secrets_match",
    "server_context",
    "write_atomic",
    "write_client_bundle",
]
