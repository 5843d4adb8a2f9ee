"""Encryption at rest and auto-lock end to end: real agent processes on loopback, driven with the
real docker CLI over TLS (`docker swarm update --autolock`, `unlock-key [-q] [--rotate]`,
`docker swarm unlock`, `docker info`), restarts with SIGKILL, and the bytes on disk checked:
the Raft state, and the managers' TLS keys (sealed by the unlock key, as Swarm's; a worker's
stays as it was, and a demoted manager's goes back in clear)."""

from __future__ import annotations

import json
import re
import socket

import pytest
from cryptography.hazmat.primitives import serialization

from swarmkit_py.ca import CertRole, client_context, identity_from_cert
from swarmkit_py.testing.agents import AgentCluster

pytestmark = pytest.mark.slow

SECRET = "autolock-canary-7f3e9a"
LOCKED = "Swarm is encrypted and needs to be unlocked before it can be used."


@pytest.fixture
def cluster(tmp_path):
    c = AgentCluster(tmp_path)
    yield c
    c.stop_all()


def _raft_bytes(node) -> bytes:
    d = node.state_dir / "raft"
    return b"".join(p.read_bytes() for p in sorted(d.glob("wal-*.log")) + sorted(d.glob("snap-*.snap")))


def _deks(node) -> dict:
    return json.loads((node.state_dir / "raft" / "deks.json").read_text())


def _restart(c: AgentCluster, n) -> None:
    c.kill(n)  # power cut: nothing flushed, nothing said to the peers
    n.api_socket.unlink(missing_ok=True)
    c.start(n)


def _node_ls(c, n):
    return c.docker(n, "node", "ls", check=False)


PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN (EC |RSA )?PRIVATE KEY-----")


def _key_bytes(n) -> bytes:
    return (n.state_dir / "certs" / "swarm-node.key").read_bytes()


def _key_in_clear(n) -> bool:
    """A PEM private key header in the key file's bytes (grep, as an intruder would)."""
    return PEM_PRIVATE_KEY.search(_key_bytes(n)) is not None


def _api_server_role(c, n) -> CertRole:
    """The role in the certificate n's Docker API (TCP) presents, over a TLS handshake made
    with the operator's client bundle."""
    b = c.bundle
    ctx = client_context((b / "ca.pem").read_bytes(), (b / "cert.pem").read_bytes(), (b / "key.pem").read_bytes(),
                         check_hostname=False)
    with socket.create_connection(("127.0.0.1", n.api_port), timeout=10) as sock, \
            ctx.wrap_socket(sock) as tls:
        return identity_from_cert(tls.getpeercert(binary_form=True)).role


def test_autolock_lock_restart_unlock_rotate_and_off(cluster):
    c = cluster
    m1 = c.add("m1")
    c.init(m1)
    c.start(m1)
    c.client_bundle(m1)
    m2 = c.add("m2")
    token = c.docker(m1, "swarm", "join-token", "-q", "manager").stdout.strip()
    c.join(m2, token, m1)
    c.start(m2)
    w1 = c.add("w1")
    c.join(w1, c.docker(m1, "swarm", "join-token", "-q", "worker").stdout.strip(), m1)
    c.start(w1)
    c.wait_for(lambda: c.docker(m1, "node", "ls", "--format", "{{.ManagerStatus}}").stdout.split().count("Reachable") == 1,
               40, "m2 joined as a reachable manager")
    worker_key = _key_bytes(w1)
    # the positive control of the grep below: keys are in clear without auto-lock
    assert all(_key_in_clear(n) for n in (m1, m2, w1))
    secret_scalar = serialization.load_pem_private_key(_key_bytes(m1), None).private_numbers().private_value
    c.docker(m1, "node", "update", "--label-add", f"secret={SECRET}", "m1")

    info = c.docker(m1, "info").stdout
    assert "Snapshot Interval: 10000" in info and "Heartbeat Tick: 2" in info and "Election Tick: 6" in info
    assert "Autolock Managers: false" in info
    # Encrypted even without auto-lock: the label is in the Raft log, but not in clear.
    c.wait_for(lambda: (m2.state_dir / "raft" / "kek").exists(), 10, "m2 has its local key file")
    for n in (m1, m2):
        assert SECRET.encode() not in _raft_bytes(n)
        assert (n.state_dir / "raft" / "kek").stat().st_mode & 0o777 == 0o600

    r = c.docker(m1, "swarm", "unlock-key", check=False)
    assert r.returncode == 1 and "no unlock key is set" in r.stderr

    out = c.docker(m1, "swarm", "update", "--autolock=true").stdout
    assert "Swarm updated." in out and "docker swarm unlock" in out
    key = c.docker(m1, "swarm", "unlock-key", "-q").stdout.strip()
    assert key.startswith("SWMKEY-1-") and key in out
    assert "Autolock Managers: true" in c.docker(m1, "info").stdout
    # Every manager re-wraps its data keys with the unlock key, drops its key file and rotates
    # its data key (the old one sat under a key that was on disk).
    for n in (m1, m2):
        c.wait_for(lambda n=n: not (n.state_dir / "raft" / "kek").exists() and _deks(n)["kek"] == "unlock-key"
                   and _deks(n)["current"] >= 2 and list(_deks(n)["keys"]) == [str(_deks(n)["current"])],
                   20, f"{n.name}: data keys sealed by the unlock key, data key rotated", n)
        assert key.encode() not in _raft_bytes(n)
        # The CA key is no longer exported next to the sealed state.
        c.wait_for(lambda n=n: not (n.state_dir / "certs" / "swarm-root-ca.key").exists(), 10,
                   f"{n.name}: CA key file removed", n)
        # The node's TLS key is sealed too (after the API's own key pair was issued).
        c.wait_for(lambda n=n: not _key_in_clear(n) and (n.state_dir / "certs" / "swarm-api.crt").exists(), 20,
                   f"{n.name}: TLS key sealed", n)
        assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in _key_bytes(n)
    assert secret_scalar.to_bytes(32, "big") not in _key_bytes(m1)
    assert _key_bytes(w1) == worker_key  # auto-lock concerns managers: the worker's key is untouched
    r = c._cli("client-cert", "--state-dir", str(m1.state_dir), "--out", str(c.base / "b2"), check=False)
    assert r.returncode != 0 and "auto-lock" in r.stderr

    # Power cut and restart: the manager serves nothing but the unlock call.
    _restart(c, m1)
    r = c.wait_for(lambda: (x := _node_ls(c, m1)).returncode == 1 and LOCKED in x.stderr and x, 30,
                   "the restarted manager says it is locked", m1)
    assert 'Please use "docker swarm unlock" to unlock it.' in r.stderr
    assert "Swarm: locked" in c.docker(m1, "info").stdout
    # Locked, the manager cannot use its node key: no cluster port at all, the key still
    # sealed on disk, and the API answers with its own certificate, whose role nothing accepts.
    assert not _key_in_clear(m1)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", m1.port), timeout=5).close()
    assert _api_server_role(c, m1) is CertRole.API_SERVER
    assert c.docker(m1, "service", "ls", check=False).returncode == 1
    # A wrong key is refused, and nothing about the right one is said.
    wrong = key[:-6] + ("AAAAAA" if not key.endswith("AAAAAA") else "BBBBBB")
    r = c.docker(m1, "swarm", "unlock", input=wrong + "\n", check=False)
    assert r.returncode == 1
    assert "swarm could not be unlocked: invalid key provided" in r.stderr
    assert key not in r.stderr + r.stdout and key[9:20] not in r.stderr
    r = c.docker(m1, "swarm", "unlock", input="not-a-key\n", check=False)
    assert r.returncode == 1 and "invalid key string" in r.stderr
    assert LOCKED in _node_ls(c, m1).stderr  # still locked
    c.docker(m1, "swarm", "unlock", input=key + "\n")
    c.wait_for(lambda: _node_ls(c, m1).returncode == 0, 20, "m1 serves the API after unlock", m1)
    labels = c.docker(m1, "node", "inspect", "m1", "--format", "{{json .Spec.Labels}}").stdout
    assert json.loads(labels) == {"secret": SECRET}  # state intact
    r = c.docker(m1, "swarm", "unlock", input=key + "\n", check=False)
    assert r.returncode == 1 and "swarm is not locked" in r.stderr

    # Rotation: the old key no longer opens a manager restarted afterwards.
    out = c.docker(m1, "swarm", "unlock-key", "--rotate").stdout
    assert "Successfully rotated manager unlock key." in out
    new_key = c.docker(m1, "swarm", "unlock-key", "-q").stdout.strip()
    assert new_key != key and new_key in out
    c.wait_for(lambda: c.docker(m2, "swarm", "unlock-key", "-q").stdout.strip() == new_key, 20, "m2 applied the rotation")
    c.docker(m2, "node", "ls")  # round trip through m2 so its key watcher has run
    _restart(c, m2)
    c.wait_for(lambda: LOCKED in _node_ls(c, m2).stderr, 30, "m2 locked after restart", m2)
    r = c.docker(m2, "swarm", "unlock", input=key + "\n", check=False)
    assert "invalid key provided" in r.stderr
    c.docker(m2, "swarm", "unlock", input=new_key + "\n")
    # Back means a leader again, seen through m1: with two managers, m1 stepped down when m2
    # went away, and until the two elect one it answers writes "no quorum" (m1's own row says
    # Reachable all along, so that word alone proves nothing).
    c.wait_for(lambda: sorted(c.docker(m1, "node", "ls", "--format", "{{.ManagerStatus}}").stdout.split())
               == ["Leader", "Reachable"], 30, "m2 back in the cluster, with a leader", m2)
    assert not _key_in_clear(m2)  # the new unlock key opened its TLS key too
    # Its log replay passed through the old key's cluster object: the disk never went back to it.
    from swarmkit_py.raft.storage import InvalidUnlockKeyError, Keyring, parse_unlock_key
    with pytest.raises(InvalidUnlockKeyError):
        Keyring.open(m2.state_dir / "raft", parse_unlock_key(key))
    assert Keyring.open(m2.state_dir / "raft", parse_unlock_key(new_key)).kek_kind == "unlock-key"

    # Demoted while auto-locked: m2 is a worker now, and auto-lock concerns managers only.
    c.docker(m1, "node", "demote", "m2")
    c.wait_for(lambda: _key_in_clear(m2) and not (m2.state_dir / "certs" / "swarm-api.crt").exists()
               and not (m2.state_dir / "raft").exists(), 30, "m2's TLS key in clear, its manager keys gone", m2)
    c.wait_for(lambda: c.docker(m1, "node", "inspect", "m2", "--format", "{{.Status.State}}").stdout.strip() == "ready",
               30, "m2 Ready as a worker, with its key in clear", m2)

    # Auto-lock off: key files come back and a restart needs no key.
    c.docker(m1, "swarm", "update", "--autolock=false")
    assert c.docker(m1, "swarm", "unlock-key", check=False).returncode == 1
    c.wait_for(lambda: (m1.state_dir / "raft" / "kek").exists() and _deks(m1)["kek"] == "local"
               and (m1.state_dir / "certs" / "swarm-root-ca.key").exists(), 20, "m1 local key file and CA key back")
    c.wait_for(lambda: _key_in_clear(m1) and not (m1.state_dir / "certs" / "swarm-api.crt").exists(), 20,
               "m1's TLS key in clear again, the API's own key pair removed", m1)
    assert serialization.load_pem_private_key(_key_bytes(m1), None).private_numbers().private_value == secret_scalar
    _restart(c, m1)
    c.wait_for(lambda: _node_ls(c, m1).returncode == 0, 30, "m1 starts unlocked", m1)
    c.wait_for(lambda: "Autolock Managers: false" in c.docker(m1, "info").stdout, 10, "info after restart", m1)
    for n in (m1, m2):
        assert SECRET.encode() not in _raft_bytes(n)
