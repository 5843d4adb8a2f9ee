"""The operator's side of the Docker API: the client bundle and the clients.

Managers serve the Docker API over TLS with client certificates issued by the cluster CA.
The bundle (`swarmkit-py client-cert` on a manager, fetched over SSH) lives on the operator's
machine under `.lab/deploy/<inventory>/bundle`, one per inventory so two clusters never share
credentials; `docker-env` points the docker CLI at the same files.

Two clients. `client()` is the docker SDK's, for tests and for anything that writes.
`Client` is what the toolkit's commands hold (`Cluster.client()`): the reads every command
does (finding a live manager, nodes, services, tasks, the swarm) go over the standard
library's http.client + ssl, and only a write loads the SDK (once, on first use). Importing
the SDK with requests, urllib3 and paramiko costs about 0.6 s of CPU, more than everything
else a read-only command does; during an incident `docker-env` and `status` must answer
within a second (issue 13).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from ..engine import filters_query
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


class APIError(Exception):
    """An error answer of the Docker API: its status and its {"message": ...}, under the
    docker SDK's attribute names (`status_code`, `explanation`) so callers treat both alike."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status_code, self.explanation = status, message


class ReadAPI:
    """The API calls the toolkit reads with, over http.client; any other attribute is the
    docker SDK's `APIClient` (created at first use, for writes)."""

    def __init__(self, host: Host, bundle: Path, timeout: float):
        self.host, self.bundle, self.timeout = host, bundle, timeout
        self._conn: http.client.HTTPSConnection | None = None
        self._sdk = None
        self._lock = threading.Lock()

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.bundle / "ca.pem"))
        ctx.load_cert_chain(str(self.bundle / "cert.pem"), str(self.bundle / "key.pem"))
        return ctx

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"/v{API_VERSION}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with self._lock:
            for attempt in (0, 1):  # a kept-alive connection the server closed: once more
                if self._conn is None:
                    self._conn = http.client.HTTPSConnection(
                        self.host.advertise_ip, int(self.host.vars["swarmkit_api_port"]),
                        context=self._context(), timeout=self.timeout)
                try:
                    self._conn.request("GET", url, headers={"Accept": "application/json"})
                    r = self._conn.getresponse()
                    body = r.read()
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    self._close_conn()
                    if attempt:
                        raise
                except BaseException:
                    self._close_conn()
                    raise
        if r.status >= 400:
            try:
                msg = json.loads(body).get("message") or body.decode(errors="replace")
            except ValueError:
                msg = body.decode(errors="replace")
            raise APIError(r.status, msg)
        return json.loads(body) if body else None

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def inspect_swarm(self) -> dict:
        return self.get("/swarm")

    def nodes(self, filters: dict | None = None) -> list[dict]:
        return self.get("/nodes", filters_query(filters))

    def inspect_node(self, node_id: str) -> dict:
        return self.get(f"/nodes/{urllib.parse.quote(node_id, safe='')}")

    def services(self, filters: dict | None = None) -> list[dict]:
        return self.get("/services", filters_query(filters))

    def tasks(self, filters: dict | None = None) -> list[dict]:
        return self.get("/tasks", filters_query(filters))

    def get_unlock_key(self) -> dict:
        return self.get("/swarm/unlockkey")

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if self._sdk is None:
            self._sdk = client(self.host, self.bundle, self.timeout).api
        return getattr(self._sdk, name)

    def close(self) -> None:
        with self._lock:
            self._close_conn()
        if self._sdk is not None:
            self._sdk.close()


class Client:
    """What `Cluster.client()` hands out: `.api` reads without the docker SDK (ReadAPI)."""

    def __init__(self, host: Host, bundle: Path, timeout: float = 10.0):
        self.api = ReadAPI(host, bundle, timeout)

    def close(self) -> None:
        self.api.close()


def explain(e: Exception) -> str:
    """The API's refusal in its own words ({"message": ...}), not requests' traceback."""
    expl = getattr(e, "explanation", None)
    if expl:
        return expl if isinstance(expl, str) else expl.decode(errors="replace")
    return str(e)
