"""The operator's client bundle for the Docker CLI and SDK: `ca.pem`, `cert.pem`, `key.pem` in
one directory, the `DOCKER_CERT_PATH` convention, so that

    DOCKER_HOST=tcp://MANAGER:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=DIR docker node ls

works with the stock CLI. The certificate has the client-auth EKU (the API server's mutual TLS
requires it) and the role "swarm-client", which the API accepts and node-to-node RPC refuses.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from .authority import NODE_CERT_VALIDITY, RootCA
from .certs import generate_key_and_csr
from .files import CERT_MODE, KEY_MODE, ensure_private_dir, write_atomic

CA_FILE = "ca.pem"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


def write_client_bundle(
    directory: str | os.PathLike[str],
    ca_cert_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
) -> Path:
    """Write the three files (key 0600, each atomically) and return the directory."""
    path = ensure_private_dir(directory)
    write_atomic(path / KEY_FILE, key_pem, KEY_MODE)
    write_atomic(path / CERT_FILE, cert_pem, CERT_MODE)
    write_atomic(path / CA_FILE, ca_cert_pem, CERT_MODE)
    return path


def issue_client_bundle(
    root_ca: RootCA,
    directory: str | os.PathLike[str],
    client_name: str,
    cluster_id: str,
    now: datetime | None = None,
    validity: timedelta = NODE_CERT_VALIDITY,
) -> Path:
    """Make a key, have the CA sign it as a client certificate, write the bundle.

    The key is generated in this process (on a manager, for `swarmkit-py client-cert`) and goes
    only into the bundle; the CA itself keeps no copy.
    """
    key_pem, csr_pem = generate_key_and_csr(client_name)
    issued = root_ca.issue_client_certificate(
        csr_pem, client_name=client_name, cluster_id=cluster_id, now=now, validity=validity
    )
    return write_client_bundle(directory, issued.ca_cert_pem, issued.cert_pem, key_pem)
