"""Hole 2: outbound node-to-node TLS did not check that the server is a manager (issue 9).

The attacker is a worker holding a certificate of the cluster's CA. To make the attack as
strong as the old hole 4 allowed, its certificate carries the DNS names "swarm-manager" and
the impersonated manager's node id (a worker certificate as `ca.join` issued them before SANs
were filtered; the test signs it with the cluster CA), so hostname checks alone cannot save
the victim: only the role the CA wrote into the subject can. The manager it impersonates dies
(SIGKILL) and the attacker listens on its address, playing:

- a Raft peer, to the leader of a 3-manager cluster: it must receive no Raft message (appends
  and snapshots carry the whole store, the CA key included);
- the dispatcher and CA, to a worker whose only manager it was: the worker must open no
  session and ask for no renewal;
- the manager a new node joins through: the joiner must not send its join token.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys

import pytest

from .attack import ca_pem, forged_worker_cert, found, node_id, rogue_server, run

pytestmark = pytest.mark.slow

WATCH = 6.0


class Recorder:
    def __init__(self, server, ca: bytes):
        self.calls: dict[str, int] = {}
        self.raft_bytes = 0
        self.tokens: list[str] = []
        self.ca = ca
        server.add_notification_handler("raft.msg", self._raft)
        for method in ("dispatcher.session", "dispatcher.heartbeat", "ca.renew", "raft.members", "raft.join"):
            server.add_handler(method, self._recorder(method))
        server.add_handler("ca.root", self._root)
        server.add_handler("ca.join", self._join)

    def _count(self, method):
        self.calls[method] = self.calls.get(method, 0) + 1

    def _raft(self, peer, params):
        self._count("raft.msg")
        self.raft_bytes += len(repr(params))

    def _recorder(self, method):
        async def handler(peer, params):
            self._count(method)
            raise RuntimeError("impostor")
        return handler

    async def _root(self, peer, params):
        self._count("ca.root")
        return {"ca_cert": self.ca.decode()}

    async def _join(self, peer, params):
        self._count("ca.join")
        self.tokens.append((params or {}).get("token"))
        raise RuntimeError("impostor")


@contextlib.asynccontextmanager
async def impostor(port: int, ca: bytes, cert_key):
    """The rogue server on a dead manager's port, recording what it is sent."""
    srv = rogue_server(port, ca, cert_key)
    rec = Recorder(srv, ca)
    await srv.start()
    try:
        yield rec
    finally:
        await srv.stop()


def test_worker_posing_as_a_raft_peer_gets_no_raft_messages(cluster):
    c = cluster
    (m1, m2, m3), (w0,) = found(c, managers=3, workers=1)
    forged = forged_worker_cert(m1, w0, ["swarm-manager", node_id(m3)])
    c.kill(m3)

    async def attack():
        async with impostor(m3.port, ca_pem(m1), forged) as rec:
            # a write, so that the leader has appends (with store data) to send to "m3"
            await asyncio.to_thread(c.docker, m1, "node", "update", "--label-add", "probe=1", node_id(w0))
            await asyncio.sleep(WATCH)
        return rec

    rec = run(attack())
    assert rec.calls.get("raft.msg", 0) == 0, (
        f"the leader sent {rec.calls['raft.msg']} Raft messages ({rec.raft_bytes} bytes) to a worker "
        "certificate posing as manager m3"
    )


def test_worker_posing_as_the_manager_gets_no_session_renewal_or_join(cluster, tmp_path):
    c = cluster
    (m1,), (w0, w1) = found(c, managers=1, workers=2)
    wtoken = c.docker(m1, "swarm", "join-token", "-q", "worker").stdout.strip()
    forged = forged_worker_cert(m1, w0, ["swarm-manager", node_id(m1)])
    c.kill(m1)

    async def attack():
        async with impostor(m1.port, ca_pem(m1), forged) as rec:
            joiner = c.add("joiner")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "swarmkit_py.cli.main", "join", "--state-dir", str(joiner.state_dir),
                "--listen-addr", joiner.addr, "--advertise-addr", joiner.addr, "--hostname", "joiner",
                "--token", wtoken, m1.addr, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=c.env)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            await asyncio.sleep(WATCH)  # the worker's session retries its only manager meanwhile
        return rec, proc.returncode, out.decode(errors="replace")

    rec, join_rc, join_out = run(attack())
    assert rec.tokens == [], f"the joiner sent its join token to a worker posing as a manager: {join_out}"
    assert join_rc != 0 and "not a manager" in join_out, join_out
    for method in ("dispatcher.session", "dispatcher.heartbeat", "ca.renew"):
        assert rec.calls.get(method, 0) == 0, f"worker w1 called {method} on a worker posing as its manager: {rec.calls}"
