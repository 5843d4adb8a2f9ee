"""The real `docker` CLI (28.x) and the docker Python SDK against our API.

The API runs on 127.0.0.1:<free port> (plain TCP) in a thread with its own event loop, over a
LocalProposer store holding 3 managers + 2 workers and a cluster object; a fake context
reports the Raft membership, which each test sets. Every CLI run gets an empty DOCKER_CONFIG
so no user configuration or context leaks in.

`docker swarm inspect` no longer exists in CLI 28 (it says "unknown command"); `docker swarm
ca` reads the same GET /swarm and stands in for it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading

import docker
import pytest

from swarmkit_py.api import make_app, serve_tcp
from tests.unit.test_controlapi_fixtures import make_swarm

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
pytestmark = pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")


class Server:
    def __init__(self, managers=3, workers=2):
        self.swarm = make_swarm(managers, workers)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            app = make_app(self.swarm.control, engine_version="0.1.0-it", hostname="m1")
            self.runner = self.loop.run_until_complete(serve_tcp(app, "127.0.0.1", 0))
            self.port = self.runner.addresses[0][1]
        except BaseException as exc:  # reported by start()
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()

    def start(self):
        self.thread.start()
        assert self.ready.wait(10), "API server did not start within 10 s"
        if self.error:
            raise self.error

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def read(self, fn):
        """Run fn(swarm) on the server's loop, so it never races a request."""

        async def call():
            return fn(self.swarm)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    @property
    def url(self):
        return f"tcp://127.0.0.1:{self.port}"


@pytest.fixture
def server():
    srv = Server()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def cli(server, tmp_path):
    env = dict(os.environ, DOCKER_CONFIG=str(tmp_path / "docker-config"))
    for var in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        env.pop(var, None)

    def run(*args, ok=True):
        proc = subprocess.run(
            [DOCKER, "-H", server.url, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if ok:
            assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
        return proc

    return run


def rows(output: str) -> dict[str, str]:
    """`docker node ls` rows keyed by hostname."""
    out = {}
    for line in output.splitlines()[1:]:
        parts = line.replace(" * ", " ").split()
        out[parts[1]] = line
    return out


# -- node ls / inspect ----------------------------------------------------------------------


def test_node_ls_shows_manager_status_and_self(server, cli):
    server.swarm.ctx.set_member(server.swarm.managers[2], reachable=False)
    out = cli("node", "ls").stdout
    r = rows(out)
    assert set(r) == {"m1", "m2", "m3", "w1", "w2"}
    assert "Leader" in r["m1"] and " * " in r["m1"]
    assert "Reachable" in r["m2"] and "Unreachable" in r["m3"]
    for w in ("w1", "w2"):
        assert "Leader" not in r[w] and "Reachable" not in r[w]
        assert "Ready" in r[w] and "Active" in r[w]
    out = cli("node", "ls", "-f", "role=manager", "-q").stdout.split()
    assert set(out) == {m[:25] for m in server.swarm.managers}


def test_node_inspect(server, cli):
    import json

    w1 = server.swarm.workers[0]
    data = json.loads(cli("node", "inspect", "w1").stdout)
    assert data[0]["ID"] == w1 and data[0]["Spec"]["Role"] == "worker"
    data = json.loads(cli("node", "inspect", "self").stdout)
    assert data[0]["ManagerStatus"]["Leader"] is True
    pretty = cli("node", "inspect", "--pretty", "m2").stdout
    assert "Manager Status:" in pretty and "Reachable" in pretty
    proc = cli("node", "inspect", "nosuch", ok=False)
    assert proc.returncode == 1 and "node nosuch not found" in proc.stderr


# -- promote / demote / update ---------------------------------------------------------------


def test_node_promote(server, cli):
    assert "promoted to a manager" in cli("node", "promote", "w1").stdout
    assert server.read(lambda s: s.node(s.workers[0]).spec.role) == "manager"
    proc = cli("node", "promote", "m1", ok=False)
    assert "already a manager" in proc.stdout + proc.stderr


def test_node_demote_allowed_with_quorum(server, cli):
    assert "demoted in the swarm" in cli("node", "demote", "m2").stdout
    assert server.read(lambda s: s.node(s.managers[1]).spec.role) == "worker"


def test_node_demote_refused_for_quorum(server, cli):
    server.swarm.ctx.set_member(server.swarm.managers[2], reachable=False)
    proc = cli("node", "demote", "m2", ok=False)
    assert proc.returncode == 1
    assert (
        "Error response from daemon: rpc error: code = FailedPrecondition desc = "
        "can't remove member from the raft: this would result in a loss of quorum"
    ) in proc.stderr
    assert server.read(lambda s: s.node(s.managers[1]).spec.role) == "manager"


def test_node_demote_refused_for_last_manager(tmp_path):
    srv = Server(managers=1, workers=1)
    srv.start()
    try:
        env = dict(os.environ, DOCKER_CONFIG=str(tmp_path / "cfg"))
        env.pop("DOCKER_HOST", None)
        proc = subprocess.run(
            [DOCKER, "-H", srv.url, "node", "demote", "m1"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 1
        assert (
            "rpc error: code = FailedPrecondition desc = "
            "attempting to demote the last manager of the swarm"
        ) in proc.stderr
    finally:
        srv.stop()


def test_node_update_availability_and_labels(server, cli):
    cli("node", "update", "--availability", "drain", "--label-add", "a=b", "w2")
    spec = server.read(lambda s: s.node(s.workers[1]).spec)
    assert spec.availability == "drain" and spec.labels == {"a": "b"}
    assert "Drain" in rows(cli("node", "ls").stdout)["w2"]
    proc = cli("node", "update", "--availability", "sideways", "w2", ok=False)
    assert proc.returncode != 0


# -- rm -------------------------------------------------------------------------------------


def test_node_rm_refusals_and_force(server, cli):
    proc = cli("node", "rm", "w1", ok=False)
    assert proc.returncode == 1 and "is not down and can't be removed" in proc.stderr
    proc = cli("node", "rm", "--force", "m2", ok=False)
    assert proc.returncode == 1
    assert "must be demoted to worker before removal" in proc.stderr
    cli("node", "rm", "--force", "w1")
    assert "w1" not in rows(cli("node", "ls").stdout)
    # A dead manager can be force-removed (its Raft member goes with its node object).
    server.swarm.ctx.set_member(server.swarm.managers[2], reachable=False)
    cli("node", "rm", "--force", "m3")
    assert server.read(lambda s: s.node(s.managers[2])) is None


# -- swarm ----------------------------------------------------------------------------------


def test_swarm_join_token_and_rotation(server, cli):
    tokens = server.read(lambda s: s.cluster().join_tokens)
    out = cli("swarm", "join-token", "worker").stdout
    assert f"docker swarm join --token {tokens.worker} 127.0.0.1:2377" in out
    assert cli("swarm", "join-token", "-q", "manager").stdout.strip() == tokens.manager
    out = cli("swarm", "join-token", "--rotate", "worker").stdout
    assert "Successfully rotated worker join token." in out
    new = server.read(lambda s: s.cluster().join_tokens)
    assert new.worker != tokens.worker and new.manager == tokens.manager
    assert new.worker.rsplit("-", 1)[0] == tokens.worker.rsplit("-", 1)[0]  # same CA digest
    assert cli("swarm", "join-token", "-q", "worker").stdout.strip() == new.worker


def test_swarm_ca_and_update(server, cli):
    pem = server.read(lambda s: s.cluster().root_ca.ca_cert)
    assert cli("swarm", "ca").stdout.strip() == pem.strip()
    assert "Swarm updated." in cli("swarm", "update", "--task-history-limit", "3").stdout
    limit = server.read(lambda s: s.cluster().spec.orchestration.task_history_retention_limit)
    assert limit == 3
    proc = cli("swarm", "update", "--cert-expiry", "1m", ok=False)
    assert proc.returncode == 1 and "minimum certificate expiry time" in proc.stderr


def test_info_and_version(server, cli):
    out = cli("info").stdout
    assert "Swarm: active" in out
    assert f"NodeID: {server.swarm.managers[0]}" in out
    assert "Is Manager: true" in out
    assert f"ClusterID: {server.swarm.cluster_id}" in out
    assert "Managers: 3" in out and "Nodes: 5" in out
    assert "127.0.0.2:2377" in out  # manager addresses
    assert "Task History Retention Limit: 5" in out
    out = cli("version").stdout
    assert "1.41 (minimum version 1.24)" in out and "0.1.0-it" in out


# -- docker SDK -----------------------------------------------------------------------------


def test_python_sdk(server):
    client = docker.DockerClient(base_url=server.url, timeout=30)
    try:
        hostnames = sorted(n.attrs["Description"]["Hostname"] for n in client.nodes.list())
        assert hostnames == ["m1", "m2", "m3", "w1", "w2"]
        managers = client.nodes.list(filters={"role": "manager"})
        assert {n.id for n in managers} == set(server.swarm.managers)
        node = client.nodes.get("w1")
        assert node.update({"Availability": "pause", "Role": "worker", "Labels": {"x": "1"}})
        spec = server.read(lambda s: s.node(s.workers[0]).spec)
        assert spec.availability == "pause" and spec.labels == {"x": "1"}
        # The SDK's node object still carries the old version: a second update is stale.
        with pytest.raises(docker.errors.APIError) as err:
            node.update({"Availability": "active", "Role": "worker", "Labels": {}})
        assert err.value.status_code == 500
        assert "update out of sequence" in str(err.value)
        attrs = client.swarm.attrs
        assert attrs["ID"] == server.swarm.cluster_id
        assert attrs["JoinTokens"]["Worker"].startswith("SWMTKN-1-")
        with pytest.raises(docker.errors.NotFound):
            client.nodes.get("nosuch")
        assert client.version()["ApiVersion"] == "1.41"
    finally:
        client.close()


def test_sdk_pinned_to_newer_api_gets_dockers_message(server):
    client = docker.APIClient(base_url=server.url, version="1.44", timeout=30)
    try:
        with pytest.raises(docker.errors.APIError) as err:
            client.nodes()
        assert "client version 1.44 is too new. Maximum supported API version is 1.41" in str(
            err.value
        )
    finally:
        client.close()
