"""The operator's side of the Docker API: the client bundle and a docker SDK client.

Managers serve the Docker API over TLS with client certificates issued by the cluster CA.
The bundle (`swarmkit-py client-cert` on a manager, fetched over SSH) lives on the operator's
machine under `.lab/deploy/<inventory>/bundle`, one per inventory so two clusters never share
credentials; `docker-env` points the docker CLI at the same files.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .inventory import Host, Inventory

REPO_ROOT = Path(__file__).resolve().parents[2]
API_VERSION = "1.41"


def deploy_dir(inv: Inventory, env: dict[str, str] | None = None) -> Path:
    """`env`: the operator's environment when it is not this process's (default os.environ)."""
    env = os.environ if env is None else env
    base = Path(env.get("SWARMKIT_DEPLOY_DIR") or REPO_ROOT / ".lab" / "deploy")
    p = inv.path.resolve()
    return base / f"{p.parent.name}-{hashlib.sha256(str(p).encode()).hexdigest()[:8]}"


def bundle_dir(inv: Inventory, env: dict[str, str] | None = None) -> Path:
    return deploy_dir(inv, env) / "bundle"


def api_url(host: Host) -> str:
    return f"{host.advertise_ip}:{host.vars['swarmkit_api_port']}"


def client(host: Host, bundle: Path, timeout: float = 10.0):
    """A docker SDK client for `host`'s API that verifies the server against the cluster CA."""
    import docker
    from docker.tls import TLSConfig

    tls = TLSConfig(client_cert=(str(bundle / "cert.pem"), str(bundle / "key.pem")),
                    ca_cert=str(bundle / "ca.pem"), verify=True)
    c = docker.DockerClient(base_url=f"https://{api_url(host)}", tls=tls, timeout=timeout, version=API_VERSION)
    c.api.trust_env = False  # REQUESTS_CA_BUNDLE must not replace the cluster CA
    return c


def explain(e: Exception) -> str:
    """The API's refusal in its own words ({"message": ...}), not requests' traceback."""
    expl = getattr(e, "explanation", None)
    if expl:
        return expl if isinstance(expl, str) else expl.decode(errors="replace")
    return str(e)
