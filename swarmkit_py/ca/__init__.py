"""Certificates, join tokens and mutual TLS for the cluster (moby/swarmkit's `ca/`).

Building blocks only: no sockets are opened here. The manager's CA server and the joining
node's client use these to issue certificates, check tokens and build TLS contexts.
"""

from .authority import (
    CERT_BACKDATE,
    NODE_CERT_VALIDITY,
    ROOT_CA_COMMON_NAME,
    ROOT_CA_VALIDITY,
    IssuedCertificate,
    RootCA,
)
from .bundle import issue_client_bundle, write_client_bundle
from .certs import (
    csr_for_key,
    generate_key_and_csr,
    key_matches_certificate,
    load_certificate,
    load_csr,
    load_private_key,
)
from .errors import (
    CADigestMismatchError,
    CAError,
    InvalidCAError,
    InvalidCertificateError,
    InvalidCSRError,
    InvalidJoinTokenError,
    PermissionDeniedError,
)
from .files import load_node_credentials, save_node_credentials, write_atomic
from .identity import (
    CertRole,
    NodeIdentity,
    authorize,
    expect_manager,
    identity_from_cert,
    peer_identity,
    require_manager_cert,
)
from .renewal import needs_renewal, renewal_fraction, renewal_time
from .tls import client_context, server_context
from .tokens import (
    TOKEN_PATTERN,
    JoinToken,
    ca_digest,
    ca_digest_matches,
    generate_join_token,
    parse_join_token,
    require_ca_digest,
    role_for_token,
    secrets_match,
)

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
