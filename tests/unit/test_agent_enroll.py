"""`init` and `join` handed to the waiting agent as a request file (agent/enroll.py, issue 13:
the `init`/`join` processes of a bootstrap cost each fresh host another interpreter and its
imports). The agent runs them as the commands do: same checks, messages, exit statuses; the
answer is in the state dir, the request is gone. The deploy side (Cluster.node_request) is
tested with its script run here by `sh`, a stand-in agent answering or not."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from swarmkit_py.agent import enroll
from swarmkit_py.agent.agent import Agent
from swarmkit_py.agent.config import AgentConfig
from swarmkit_py.agent.state import JOINING_AS, LocalNode, role_hint
from swarmkit_py.cli.main import main as cli_main


def cfg_for(tmp_path: Path, **kw) -> AgentConfig:
    return AgentConfig(state_dir=str(tmp_path / "state"), listen_addr="127.0.0.1:2377",
                       advertise_addr=kw.pop("advertise_addr", "127.0.0.1:2377"), hostname="h1", **kw)


def put_request(state: Path, req) -> None:
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    (state / enroll.REQUEST).write_text(req if isinstance(req, str) else json.dumps(req))


def answer_of(state: Path) -> tuple[int, str, str]:
    return (int((state / enroll.ANSWER_RC).read_text().split()[0]), (state / enroll.ANSWER_OUT).read_text(),
            (state / enroll.ANSWER_ERR).read_text())


def test_the_waiting_agent_founds_the_swarm_on_an_init_request(tmp_path):
    cfg = cfg_for(tmp_path)
    state = Path(cfg.state_dir)
    bundle = tmp_path / "bundle"
    put_request(state, {"op": "init", "client_bundle": str(bundle)})
    agent = Agent(cfg)
    st = asyncio.run(asyncio.wait_for(agent._wait_for_state(), 60))
    assert st.role == "manager" and st.bootstrap and LocalNode.load(state) == st
    rc, out, err = answer_of(state)
    assert rc == 0 and err == ""
    assert f"Swarm initialized: current node ({st.node_id}) is now a manager." in out
    assert f"wrote ca.pem, cert.pem, key.pem to {bundle}" in out
    assert (bundle / "key.pem").stat().st_mode & 0o777 == 0o600
    assert not (state / enroll.REQUEST).exists() and not (state / enroll.TAKEN).exists()
    assert agent._manager_half is not None  # an init's node is a manager: its half loads meanwhile


def test_an_init_request_is_refused_as_the_command_refuses_it(tmp_path, capsys):
    cfg = cfg_for(tmp_path)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    out, err = io.StringIO(), io.StringIO()
    rc = asyncio.run(enroll.serve(cfg, {"op": "init", "client_bundle": str(bundle)}, out, err))
    assert rc == 1 and LocalNode.load(Path(cfg.state_dir)) is None
    cli_rc = cli_main(["init", "--state-dir", str(tmp_path / "other"), "--advertise-addr", "127.0.0.1:2377",
                       "--client-bundle", str(bundle)])
    assert (rc, err.getvalue()) == (cli_rc, capsys.readouterr().err)


@pytest.mark.parametrize("advertise", [None, "127.0.0.1:2377"])
def test_a_join_request_fails_with_the_command_s_message(tmp_path, capsys, advertise):
    """No advertise address (exit 2), or a token that is not one (exit 1): the agent answers
    what `swarmkit-py join` prints, and stays a node without a swarm."""
    cfg = cfg_for(tmp_path, advertise_addr=advertise)
    state = Path(cfg.state_dir)
    put_request(state, {"op": "join", "manager": "127.0.0.1:1", "token": "not-a-token", "role": "worker"})
    agent = Agent(cfg)

    async def one_turn():
        return await agent._serve_request()

    assert asyncio.run(one_turn()) is True
    rc, out, err = answer_of(state)
    yml = tmp_path / "agent.yml"
    yml.write_text(f"state_dir: {tmp_path / 'cli-state'}\n" + (f"advertise_addr: {advertise}\n" if advertise else ""))
    cli_rc = cli_main(["join", "--token", "not-a-token", "--expect-role", "worker", "127.0.0.1:1", "--config", str(yml)])
    assert (rc, out, err) == (cli_rc, "", capsys.readouterr().err)
    assert rc == (2 if not advertise else 1) and err.startswith("join: ")
    assert LocalNode.load(state) is None and not (state / enroll.REQUEST).exists()


@pytest.mark.parametrize("raw", ["{not json", json.dumps({"op": "leave"}), json.dumps({"op": "join", "token": "t"}),
                                 json.dumps({"op": "join", "manager": "m:1", "token": "t", "role": "boss"})])
def test_a_request_that_is_not_one_is_answered_and_dropped(tmp_path, raw):
    cfg = cfg_for(tmp_path)
    state = Path(cfg.state_dir)
    put_request(state, raw)
    assert asyncio.run(Agent(cfg)._serve_request()) is True
    rc, _, err = answer_of(state)
    assert rc == 2 and err.startswith("the agent refused the request: ")
    assert not (state / enroll.REQUEST).exists() and not (state / enroll.TAKEN).exists()


def test_no_request_no_answer(tmp_path):
    cfg = cfg_for(tmp_path)
    Path(cfg.state_dir).mkdir(parents=True)
    assert asyncio.run(Agent(cfg)._serve_request()) is False
    assert not (Path(cfg.state_dir) / enroll.ANSWER_RC).exists()


# --- the operator's side: Cluster.node_request's script, run by sh here ------------------------

class LocalConn:
    def __init__(self):
        self.cmds: list[str] = []

    def run(self, cmd, timeout=None, **kw):
        from swarmkit_py.deploy.ssh import Result

        self.cmds.append(cmd)
        r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)
        return Result(r.returncode, r.stdout, r.stderr)


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    from swarmkit_py.deploy import cluster as cl_mod
    from swarmkit_py.deploy.inventory import Host

    root = tmp_path / "opt"
    (root / "current" / "bin").mkdir(parents=True)
    cli = root / "current" / "bin" / "swarmkit-py"
    cli.write_text("#!/bin/sh\necho \"the command ran: $*\"\necho 'its stderr' >&2\nexit 3\n")
    cli.chmod(0o755)
    h = Host(name="h1", address="127.0.0.1", port=22, user="root", key_file=None, become=False, known_hosts=None,
             groups=(), vars={"swarmkit_root": str(root), "swarmkit_state_dir": str(tmp_path / "state"),
                              "swarmkit_agent_config": str(tmp_path / "agent.yml")})
    conn = LocalConn()

    class R:
        def conn(self, host):
            return conn

    c = cl_mod.Cluster.__new__(cl_mod.Cluster)
    c.runner = R()
    monkeypatch.setattr(cl_mod, "REQUEST_TAKE_S", 1.0)
    monkeypatch.setattr(cl_mod, "REQUEST_ANSWER_S", 3.0)
    return c, h, conn, Path(tmp_path / "state")


def test_node_request_is_answered_by_the_agent(cluster):
    c, h, conn, state = cluster
    seen = {}

    def agent():  # the agent's side, as Agent._serve_request does it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                req = enroll.take_request(state)
            except FileNotFoundError:
                req = None
            if req is not None:
                seen["req"] = req
                seen["mode"] = os.stat(state).st_mode & 0o777
                enroll.answer(state, 1, "out line\n", "join: refused\n", req["id"])
                return
            time.sleep(0.02)

    t = threading.Thread(target=agent)
    t.start()
    req = {"op": "join", "manager": "10.0.0.1:2377", "token": "SWMTKN-1-x", "role": "worker"}
    r = c.node_request(h, req, "join --token SWMTKN-1-x --expect-role worker 10.0.0.1:2377")
    t.join()
    assert seen["req"] == {**req, "id": seen["req"]["id"]} and len(seen["req"]["id"]) == 32
    assert seen["mode"] == 0o700
    assert (r.rc, r.stdout, r.stderr) == (1, "out line\n", "join: refused\n")
    assert sorted(os.listdir(state)) == []  # the answer is read and removed


def test_node_request_runs_the_command_when_no_agent_takes_it(cluster):
    c, h, conn, state = cluster
    t0 = time.monotonic()
    r = c.node_request(h, {"op": "init", "client_bundle": "/tmp/b"}, "init --client-bundle /tmp/b")
    assert 1.0 <= time.monotonic() - t0 < 10
    assert r.rc == 3 and r.stdout == f"the command ran: init --client-bundle /tmp/b --config {h.vars['swarmkit_agent_config']}\n"
    assert r.stderr == "its stderr\n"
    assert os.listdir(state) == []  # taken back: no agent acts on it later


def test_node_request_says_when_the_agent_took_it_but_never_answered(cluster):
    c, h, conn, state = cluster

    def agent():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (state / enroll.REQUEST).exists():
            time.sleep(0.02)
        os.rename(state / enroll.REQUEST, state / enroll.TAKEN)  # took it, then died

    t = threading.Thread(target=agent)
    t.start()
    r = c.node_request(h, {"op": "init", "client_bundle": None}, "init")
    t.join()
    assert r.rc == 1 and "h1's agent took the request but gave no answer in 3 s (see its log)" in r.stderr
    assert "the command ran" not in r.stdout


# --- the bundle init wrote, taken in one round trip --------------------------------------------

def test_take_bundle_reads_the_three_files_and_removes_them_in_one_round_trip(cluster, tmp_path):
    c, h, conn, _ = cluster
    c.bundle = tmp_path / "operator" / "bundle"
    c._client = None
    remote = tmp_path / "remote-bundle"
    remote.mkdir(mode=0o700)
    files = {"ca.pem": b"CA\n", "cert.pem": b"CERT\n", "key.pem": b"-----KEY-----\n\x00\xff"}
    for f, data in files.items():
        (remote / f).write_bytes(data)
    got = c.take_bundle(h, str(remote))
    assert got == c.bundle and len(conn.cmds) == 1
    assert {f: (got / f).read_bytes() for f in files} == files
    assert (got / "key.pem").stat().st_mode & 0o777 == 0o600 and got.stat().st_mode & 0o777 == 0o700
    assert not remote.exists()


def test_take_bundle_removes_a_partial_bundle_and_says_so(cluster, tmp_path):
    c, h, conn, _ = cluster
    c.bundle = tmp_path / "operator" / "bundle"
    remote = tmp_path / "remote-bundle"
    remote.mkdir()
    (remote / "ca.pem").write_text("CA\n")
    with pytest.raises(RuntimeError, match="could not read the client bundle"):
        c.take_bundle(h, str(remote))
    assert not remote.exists() and not c.bundle.exists()


def test_a_request_its_caller_gave_up_on_is_dropped_not_run(tmp_path):
    """A request left by a caller killed before the agent took it (or taken back too late to
    matter) must not found or join a swarm minutes later, at the agent's next start."""
    cfg = cfg_for(tmp_path)
    state = Path(cfg.state_dir)
    put_request(state, {"op": "init", "client_bundle": None})
    old = time.time() - enroll.STALE_S - 5
    os.utime(state / enroll.REQUEST, (old, old))
    assert asyncio.run(Agent(cfg)._serve_request()) is True
    rc, _, err = answer_of(state)
    assert rc == 2 and "its caller gave up on it" in err
    assert LocalNode.load(state) is None and not (state / enroll.REQUEST).exists()


def test_leave_removes_the_request_files(tmp_path):
    state = tmp_path / "state"
    put_request(state, {"op": "init"})
    enroll.answer(state, 0, "", "")
    (state / JOINING_AS).write_text("manager\n")
    Agent.wipe(state)
    assert os.listdir(state) == []


def test_told_it_will_be_a_manager_the_waiting_agent_loads_its_manager_half(cluster, tmp_path):
    """Cluster.expect_manager (bootstrap, as a manager's install ends): the agent waiting to
    be enrolled loads its manager half before the join comes (it used to after, on the way
    to the manager being Reachable); serving the request removes the hint. Nothing is
    written on a host already in a swarm."""
    from swarmkit_py.deploy import cluster as cl_mod

    c, h, conn, state = cluster
    assert cl_mod.JOINING_AS == JOINING_AS
    c.expect_manager(h)
    assert role_hint(state) == "manager" and (state / JOINING_AS).stat().st_mode & 0o777 == 0o600
    cfg = cfg_for(tmp_path)
    agent = Agent(cfg)

    async def waits_then_serves():
        task = asyncio.create_task(agent._wait_for_state())
        deadline = time.monotonic() + 30
        while agent._manager_half is None:
            assert time.monotonic() < deadline, "the manager half did not start loading"
            await asyncio.sleep(0.05)
        put_request(state, {"op": "join", "manager": "127.0.0.1:1", "token": "not-a-token", "role": "manager"})
        while not (state / enroll.ANSWER_RC).exists():
            assert time.monotonic() < deadline, "no answer"
            await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(waits_then_serves())
    assert answer_of(state)[0] == 1 and role_hint(state) is None
    LocalNode(node_id="n", cluster_id="c", role="worker", raft_id=0, managers=["m:1"]).save(state)
    c.expect_manager(h)
    assert role_hint(state) is None


def test_node_request_takes_only_its_own_request_s_answer(cluster):
    """An answer left for a request whose caller was killed (another id) is not taken for
    this request's: it is removed, and this request's answer awaited."""
    c, h, conn, state = cluster

    def agent():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (state / enroll.REQUEST).exists():
            time.sleep(0.02)
        enroll.answer(state, 0, "old out\n", "", "someone-else")  # the old request's, late
        time.sleep(0.3)
        req = enroll.take_request(state)
        enroll.answer(state, 1, "", "join: mine\n", req["id"])

    t = threading.Thread(target=agent)
    t.start()
    r = c.node_request(h, {"op": "join", "manager": "m:1", "token": "t", "role": None}, "join")
    t.join()
    assert (r.rc, r.stdout, r.stderr) == (1, "", "join: mine\n")


def test_taking_a_request_drops_an_answer_nobody_read(tmp_path):
    state = tmp_path / "state"
    put_request(state, {"op": "init", "id": "new"})
    enroll.answer(state, 0, "stale", "", "old")
    assert enroll.take_request(state)["id"] == "new"
    assert os.listdir(state) == []
