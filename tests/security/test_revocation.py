"""Hole 5: removed and demoted nodes kept their rights until their certificate expired
(90 days), because every authorization read only the certificate's role (issue 9).

A 3-manager cluster of real agents and a worker. The attacker keeps copies of:
- manager m3's certificate and key from before `docker node demote m3`;
- worker w0's certificate and key from before `docker node rm --force w0`.
Right after the store says the demotion and the removal are done, it tries every port:
- m3's old manager certificate: `raft.members` on 2377 (manager-only), a Raft heartbeat with a
  higher term to the leader (which would depose it), and `docker node ls` / `docker node
  promote` on the Docker API (2376) through a client bundle made of that certificate;
- w0's removed certificate: any call at all on 2377 (the connection must be refused).
Each must be refused, and the leader must keep its term.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from swarmkit_py.raft.codec import message_to_tuple
from swarmkit_py.raft.types import Message, MsgType
from swarmkit_py.rpc import RpcClient, RpcError
from swarmkit_py.testing.agents import DOCKER

from .attack import ca_pem, certs, found, node_context, run

pytestmark = pytest.mark.slow


def _bundle(c, src, dest):
    dest.mkdir(parents=True)
    shutil.copy(certs(src) / "swarm-root-ca.crt", dest / "ca.pem")
    shutil.copy(certs(src) / "swarm-node.crt", dest / "cert.pem")
    shutil.copy(certs(src) / "swarm-node.key", dest / "key.pem")
    return dest


def _docker_with(c, bundle, manager, *args):
    env = {**c.env, "DOCKER_CONFIG": str(bundle.parent / "docker-config"), "DOCKER_HOST": f"tcp://127.0.0.1:{manager.api_port}",
           "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(bundle)}
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, env=env, timeout=30)


def test_removed_and_demoted_nodes_lose_their_rights_at_once(cluster, tmp_path):
    c = cluster
    (m1, m2, m3), (w0,) = found(c, managers=3, workers=1)
    m3_raft_id = m3.node_state()["raft_id"]
    old_manager = _bundle(c, m3, tmp_path / "m3-manager-cert")
    removed = _bundle(c, w0, tmp_path / "w0-cert")
    assert _docker_with(c, old_manager, m1, "node", "ls").returncode == 0  # a manager's right, for now

    c.docker(m1, "node", "demote", "m3")
    c.wait_for(lambda: c.docker(m1, "node", "inspect", "m3", "--format", "{{.Spec.Role}} {{.ManagerStatus}}").stdout.strip()
               == "worker <nil>", 30, "m3 demoted (role worker, no manager status)")
    c.kill(w0)
    c.docker(m1, "node", "rm", "--force", "w0")
    term = c.metrics(m1)["swarmkit_raft_term"]

    # The Docker API with the demoted manager's certificate
    ls = _docker_with(c, old_manager, m1, "node", "ls")
    promote = _docker_with(c, old_manager, m1, "node", "promote", "m3")

    async def attack():
        out = {}
        mgr = RpcClient("127.0.0.1", m1.port, ssl=node_context(m3, (
            (old_manager / "cert.pem").read_bytes(), (old_manager / "key.pem").read_bytes())), timeout=5)
        try:
            out["raft.members"] = await mgr.call("raft.members", {})
        except RpcError as e:
            out["raft.members"] = e
        try:
            hb = Message(MsgType.HEARTBEAT, frm=m3_raft_id, to=m1.node_state()["raft_id"], term=int(term) + 5)
            await mgr.notify("raft.msg", message_to_tuple(hb))
            await asyncio.sleep(1.0)
        except RpcError as e:
            out["raft.msg"] = e
        finally:
            await mgr.close()
        rm = RpcClient("127.0.0.1", m1.port, ssl=node_context(w0, (
            (removed / "cert.pem").read_bytes(), (removed / "key.pem").read_bytes())), timeout=5, connect_timeout=5)
        try:
            out["removed ca.root"] = await rm.call("ca.root", {})
        except RpcError as e:
            out["removed ca.root"] = e
        finally:
            await rm.close()
        return out

    out = run(attack())
    after = c.metrics(m1)
    assert ls.returncode != 0, f"the demoted manager's certificate still lists nodes on the API:\n{ls.stdout}"
    assert "demoted" in ls.stderr, ls.stderr
    assert promote.returncode != 0, "the demoted manager's certificate promoted its own node back"
    assert isinstance(out["raft.members"], RpcError) and out["raft.members"].code == "permission_denied", (
        f"raft.members answered a demoted manager: {out['raft.members']}")
    assert after["swarmkit_raft_is_leader"] == 1 and after["swarmkit_raft_term"] == term, (
        f"a Raft heartbeat from the demoted manager moved the leader's term {term} -> {after['swarmkit_raft_term']}")
    assert isinstance(out["removed ca.root"], RpcError), "a removed node's certificate was served on 2377"
    assert ca_pem(m1)  # the cluster CA is untouched
