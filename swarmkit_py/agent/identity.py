"""Creating a node's identity on disk: the founding manager's (`init`) and a client bundle.

`init` only prepares state; the running agent founds the Raft group and writes the first
transaction. Splitting it this way lets a supervisor (systemd or the lab's) own the agent
process while `init` stays a short command an operator or the deploy toolkit can run.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
from pathlib import Path

from ..ca.files import save_node_credentials, write_atomic
from ..ca.identity import CertRole

# `cryptography` (the CA, keys) is imported by `init` and `client-cert`, not with this module:
# the agent imports it for `new_raft_id`, and a worker's agent never loads it (ca/sslfacts.py).
from ..store import new_id
from .state import ROOT_CA_CERT, ROOT_CA_KEY, LocalNode, certs_dir


def new_raft_id() -> int:
    return random.SystemRandom().randrange(1, 1 << 62)


def san_for(advertise_addr: str, hostname: str) -> tuple[list[str], list[str]]:
    host = advertise_addr.rpartition(":")[0].strip("[]")
    dns, ips = [hostname, "localhost"], ["127.0.0.1"]
    try:
        ipaddress.ip_address(host)
        ips.append(host)
    except ValueError:
        dns.append(host)
    return dns, ips


def init_state(state_dir: Path, advertise_addr: str, hostname: str | None = None,
               client_bundle: Path | None = None, client_name: str = "operator") -> LocalNode:
    """Prepare a founding manager: root CA, its own manager certificate, node.json. With
    `client_bundle`, also a client bundle for `client_name` (what `client-cert --out` writes),
    signed while the new CA's key is at hand: in a directory this call makes (0700; it must
    not exist), before node.json, so a failure leaves no half-founded node."""
    state_dir = Path(state_dir)
    existing = LocalNode.load(state_dir)
    if existing is not None:
        raise SystemExit(
            f"this node is already part of a swarm (node {existing.node_id}, state in {state_dir}); "
            "run `swarmkit-py leave --force` first to start over"
        )
    if client_bundle is not None:
        # a new directory, never one someone else made: the bundle's key opens the cluster's API
        os.mkdir(client_bundle, 0o700)
    from ..ca.authority import RootCA
    from ..ca.certs import generate_key_and_csr

    hostname = hostname or socket.gethostname()
    ca = RootCA.create()
    cluster_id, node_id = new_id(), new_id()
    key_pem, csr_pem = generate_key_and_csr(node_id)
    dns, ips = san_for(advertise_addr, hostname)
    issued = ca.issue_node_certificate(csr_pem, node_id, CertRole.MANAGER, cluster_id, dns_names=dns, ip_addresses=ips)
    cdir = certs_dir(state_dir)
    save_node_credentials(cdir, issued.cert_pem, key_pem)
    write_atomic(cdir / ROOT_CA_CERT, ca.cert_pem, mode=0o644)
    write_atomic(cdir / ROOT_CA_KEY, ca.key_pem, mode=0o600)  # moved into the store at bootstrap
    if client_bundle is not None:
        from ..ca.bundle import issue_client_bundle

        issue_client_bundle(ca, Path(client_bundle), client_name, cluster_id)
    st = LocalNode(node_id=node_id, cluster_id=cluster_id, role="manager", raft_id=new_raft_id(),
                   managers=[advertise_addr], bootstrap=True)
    st.save(state_dir)
    return st


def write_client_cert(state_dir: Path, out_dir: Path, name: str = "operator") -> Path:
    """A DOCKER_CERT_PATH bundle (ca.pem, cert.pem, key.pem) signed by the cluster CA, for
    the operator's docker CLI. Needs the CA key, which managers hold in the replicated store;
    the agent exports it to certs/ while it runs and auto-lock is off (manager/autolock.py)."""
    from ..ca.authority import RootCA
    from ..ca.bundle import issue_client_bundle

    st = LocalNode.load(Path(state_dir))
    if st is None:
        raise SystemExit(f"no swarm state in {state_dir}: this node is not part of a swarm")
    cdir = certs_dir(Path(state_dir))
    key = cdir / ROOT_CA_KEY
    if not key.exists():
        raise SystemExit(
            f"{key} is missing: run client-cert on a manager whose agent is running. With "
            "auto-lock on, the CA key is kept only in the sealed Raft state: reuse an existing "
            "client bundle, or turn auto-lock off (`docker swarm update --autolock=false`) to issue one"
        )
    ca = RootCA.from_pem((cdir / ROOT_CA_CERT).read_bytes(), key.read_bytes())
    return issue_client_bundle(ca, Path(out_dir), name, st.cluster_id)
