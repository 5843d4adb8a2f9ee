"""A cluster of real agent processes on loopback, driven the way an operator would.

Used by the integration tests and the benchmarks: every node is an OS process started with
`swarmkit-py agent`, founded and joined with `swarmkit-py init` / `join`, and inspected through
the Docker API with the real docker CLI or SDK over TLS with a client bundle. Only processes
started here are ever signalled, by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..raft.kv.cluster import free_ports

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
NODE_LABEL = "com.docker.swarm.node.id"
SERVICE_LABEL = "com.docker.swarm.service.name"


@dataclass
class AgentProc:
    name: str
    state_dir: Path
    port: int
    api_port: int
    metrics_port: int
    api_socket: Path
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def node_state(self) -> dict | None:
        p = self.state_dir / "node.json"
        return json.loads(p.read_text()) if p.exists() else None


class AgentCluster:
    def __init__(self, base: str | Path, *, env: dict | None = None):
        self.base = Path(base)
        self.nodes: dict[str, AgentProc] = {}
        # Agents here share the machine's network namespace: no VXLAN, NAT rules or DNS
        # sockets in it (the lab tests run the data plane, each host in its own namespace).
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "SWARMKIT_PY_OVERLAY_DATAPLANE": "0",
                    **(env or {})}
        self.bundle: Path | None = None
        self.start_timeout = 30.0
        """Seconds an agent has to come up (benches on a loaded machine raise it)."""

    def _cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "swarmkit_py.cli.main", *args], capture_output=True, text=True,
                           env=self.env, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"swarmkit-py {' '.join(args)} failed ({r.returncode}): {r.stderr or r.stdout}")
        return r

    def add(self, name: str) -> AgentProc:
        port, api_port, metrics_port = free_ports(3)
        d = self.base / name
        d.mkdir(parents=True, exist_ok=True)
        n = AgentProc(name, d / "state", port, api_port, metrics_port, d / "docker.sock", d / "agent.log")
        self.nodes[name] = n
        return n

    def _args(self, n: AgentProc) -> list[str]:
        return ["--state-dir", str(n.state_dir), "--listen-addr", n.addr, "--advertise-addr", n.addr, "--hostname", n.name]

    def init(self, n: AgentProc) -> None:
        self._cli("init", *self._args(n))

    def join(self, n: AgentProc, token: str, manager: AgentProc, check: bool = True) -> subprocess.CompletedProcess:
        return self._cli("join", *self._args(n), "--token", token, manager.addr, check=check)

    def start(self, n: AgentProc, wait: bool = True) -> None:
        cmd = [sys.executable, "-m", "swarmkit_py.cli.main", "agent", *self._args(n),
               "--api-listen", f"127.0.0.1:{n.api_port}", "--api-socket", str(n.api_socket),
               "--metrics-listen", f"127.0.0.1:{n.metrics_port}", "--log-level", "INFO"]
        with open(n.log_path, "ab") as logf:
            n.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        if wait:
            self.wait_for(lambda: n.api_socket.exists() or n.node_state() and n.node_state()["role"] == "worker",
                          self.start_timeout, f"agent {n.name} did not come up; see {n.log_path}", n)

    def metrics(self, n: AgentProc) -> dict[str, float]:
        """Scrape /metrics: {'name{labels}': value}."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{n.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def kill(self, n: AgentProc) -> None:
        """SIGKILL: the host died; nothing is flushed."""
        if n.alive:
            n.proc.send_signal(signal.SIGKILL)
            n.proc.wait()

    def remove_task_containers(self, engine) -> None:
        """Remove every container of this cluster's nodes from the shared engine (by the node
        label, so containers of anything else on the machine are never touched)."""
        for n in self.nodes.values():
            st = n.node_state()
            if st:
                for ct in engine.containers.list(all=True, filters={"label": f"{NODE_LABEL}={st['node_id']}"}):
                    ct.remove(force=True)

    def stop_all(self) -> None:
        for n in self.nodes.values():
            if n.alive:
                n.proc.send_signal(signal.SIGTERM)
        for n in self.nodes.values():
            if n.proc is not None:
                try:
                    n.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait()

    def client_bundle(self, manager: AgentProc) -> Path:
        out = self.base / "bundle"
        self.wait_for(lambda: (manager.state_dir / "certs" / "swarm-root-ca.key").exists(), 20, "CA key not exported")
        self._cli("client-cert", "--state-dir", str(manager.state_dir), "--out", str(out))
        self.bundle = out
        return out

    def docker_env(self, manager: AgentProc) -> dict[str, str]:
        """The environment that points the docker CLI at `manager`'s API (for a CLI process a
        test runs itself, e.g. a `docker service logs -f` it reads while acting)."""
        assert self.bundle is not None, "call client_bundle() first"
        return {**self.env, "DOCKER_CONFIG": str(self.base / "docker-config"),
                "DOCKER_HOST": f"tcp://127.0.0.1:{manager.api_port}", "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": str(self.bundle)}

    def first_manager(self, name: str = "m1") -> AgentProc:
        """A new swarm's first manager, running, with the client bundle made."""
        m = self.add(name)
        self.init(m)
        self.start(m)
        self.client_bundle(m)
        return m

    def ready_worker(self, name: str, manager: AgentProc, timeout: float = 60) -> AgentProc:
        """A worker joined through `manager`, running, and Ready in `docker node ls`."""
        token = self.docker(manager, "swarm", "join-token", "-q", "worker").stdout.strip()
        w = self.add(name)
        self.join(w, token, manager)
        self.start(w)
        self.wait_for(lambda: f"{name} Ready" in self.docker(
            manager, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout,
            timeout, f"{name} Ready")
        return w

    def docker(self, manager: AgentProc, *args: str, check: bool = True, timeout: float = 30,
               input: str | None = None) -> subprocess.CompletedProcess:
        """The real docker CLI, over TCP with TLS and our client bundle (`input`: its stdin, e.g.
        the key `docker swarm unlock` reads when stdin is not a terminal)."""
        r = subprocess.run([DOCKER, *args], capture_output=True, text=True, env=self.docker_env(manager), timeout=timeout,
                           input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def sdk(self, manager: AgentProc):
        import docker
        from docker.tls import TLSConfig

        b = self.bundle
        tls = TLSConfig(client_cert=(str(b / "cert.pem"), str(b / "key.pem")), ca_cert=str(b / "ca.pem"), verify=True)
        client = docker.DockerClient(base_url=f"https://127.0.0.1:{manager.api_port}", tls=tls, timeout=20, version="1.41")
        # requests lets REQUESTS_CA_BUNDLE override the session's CA file; ours must win
        client.api.trust_env = False
        return client

    @staticmethod
    def wait_for(cond, timeout: float, message: str, node: AgentProc | None = None, interval: float = 0.05):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                v = cond()
                if v:
                    return v
            except Exception as e:  # conditions may query a cluster that is still settling
                last = e
            if node is not None and node.proc is not None and node.proc.poll() is not None:
                raise AssertionError(f"{message}: agent exited with {node.proc.returncode}; log tail:\n{_tail(node.log_path)}")
            time.sleep(interval)
        extra = f" (last error: {last})" if last else ""
        if node is not None:
            extra += f"; log tail:\n{_tail(node.log_path)}"
        raise AssertionError(f"{message} within {timeout}s{extra}")


def _tail(p: Path, n: int = 30) -> str:
    try:
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
