"""bootstrap on fresh hosts founds the swarm on the first manager as soon as that host's own
install is done, while the other hosts install (issue 13: `init` used to wait for all seven);
anything else (a member among the hosts, --check, a host whose membership could not be read)
takes the path it took before. The cluster, the install and `init` are stand-ins here: what is
tested is the order, on which thread, and what a failure raises."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from rich.console import Console

from swarmkit_py.deploy import bootstrap as bs
from swarmkit_py.deploy.inventory import Host
from swarmkit_py.deploy.runner import Ctx, RunLog, Runner, StepResult

NAMES = ["h1", "h2", "h3", "h4", "h5"]


def host(name: str) -> Host:
    return Host(name=name, address="127.0.0.1", port=22, user="root", key_file=None, become=False,
                known_hosts=None, groups=(), vars={})


class Inv:
    def __init__(self) -> None:
        self.hosts = {n: host(n) for n in NAMES}
        self.path = Path("hosts.yml")

    def group(self, name: str) -> list[str]:
        return []


class World:
    """The stand-ins, and what they saw."""

    def __init__(self, monkeypatch, tmp_path, members=None, states=None, init_error=None, check=False):
        self.members = members or {}
        self.states = {n: "ok" for n in NAMES} | (states or {})
        self.reads: list[list[str]] = []
        self.founded: list[tuple[str, bool, bool]] = []  # host, on the main thread, install still running
        self.joined: list = []
        self.told: list[str] = []  # managers told, as their install ended, that they will join as one
        self.installing = False
        self.init_started = threading.Event()
        self.init_error = init_error
        self.runner = Runner("test", check=check, console=Console(file=io.StringIO()),
                             log=RunLog("test", base=tmp_path))
        world = self

        class FakeCluster:
            def __init__(self, inv, runner):
                self.runner = runner

            def membership(self, hosts):
                world.reads.append([h.name for h in hosts])
                return {h.name: world.members.get(h.name) for h in hosts}

            def client(self, prefer=None, timeout=None):
                return None

            def expect_manager(self, h):
                world.told.append(h.name)

        def install(runner, hosts, per_host=None, pending=None, on_done=None, upload_gate=None):
            world.gate = upload_gate
            world.installing = True
            try:
                for h in hosts:
                    if on_done is not None:
                        on_done(h, world.states[h.name])
                    if h is hosts[0] and world.states[h.name] == "ok" and not check and not world.members:
                        # the others are still installing when the founder's init starts
                        assert world.init_started.wait(5), "init did not start while the others installed"
                return dict(world.states)
            finally:
                world.installing = False

        def found(cl, h):
            world.founded.append((h.name, threading.current_thread() is threading.main_thread(), world.installing))
            world.init_started.set()
            if world.init_error is not None:
                raise world.init_error
            cl.runner.record(StepResult(h.name, "swarm init", "changed", "founded the swarm"))

        monkeypatch.setattr(bs, "Cluster", FakeCluster)
        monkeypatch.setattr(bs, "install", install)
        monkeypatch.setattr(bs, "_found", found)
        monkeypatch.setattr(bs, "join_hosts", lambda cl, m, w, members: world.joined.append(
            ([h.name for h in m], [h.name for h in w], dict(members))))
        monkeypatch.setattr(bs, "print_status", lambda cl: None)

    def run(self):
        return bs.bootstrap(Inv(), self.runner, 3)


def test_fresh_hosts_found_the_swarm_while_the_others_install(monkeypatch, tmp_path):
    w = World(monkeypatch, tmp_path)
    w.run()
    assert w.founded == [("h1", False, True)]  # h1, on its own thread, during the install
    assert w.reads == [NAMES]  # membership read once: fresh hosts have nothing to read again
    assert w.joined == [(["h2", "h3"], ["h4", "h5"], dict.fromkeys(NAMES))]
    assert w.told == ["h2", "h3"]  # the other managers' agents load their manager half while they wait


def test_a_manager_failing_to_install_stops_bootstrap_with_the_same_error(monkeypatch, tmp_path):
    w = World(monkeypatch, tmp_path, states={"h3": "unreachable"})
    with pytest.raises(bs.ClusterError, match=r"manager host\(s\) h3 failed to install"):
        w.run()
    assert [f[0] for f in w.founded] == ["h1"] and not w.joined and w.told == ["h2"]
    assert not [t for t in threading.enumerate() if t.name.startswith("init ")]


def test_the_founder_failing_to_install_founds_nothing(monkeypatch, tmp_path):
    w = World(monkeypatch, tmp_path, states={"h1": "failed"})
    with pytest.raises(bs.ClusterError, match=r"manager host\(s\) h1 failed"):
        w.run()
    assert w.founded == [] and not w.joined


def test_an_init_failure_is_raised_on_the_callers_thread(monkeypatch, tmp_path):
    w = World(monkeypatch, tmp_path, init_error=bs.ClusterError("init on h1 failed: boom"))
    with pytest.raises(bs.ClusterError, match="init on h1 failed: boom"):
        w.run()
    assert not w.joined


def test_a_running_swarm_takes_the_path_it_took_before(monkeypatch, tmp_path):
    members = {"h1": {"role": "manager"}, "h2": {"role": "manager"}}
    w = World(monkeypatch, tmp_path, members=members)
    w.run()
    assert w.founded == [] and [r for r in w.reads if r] == [NAMES]  # no host to read again
    assert w.joined and w.joined[0][0] == ["h2", "h3"]


def test_check_mode_founds_nothing_early(monkeypatch, tmp_path):
    w = World(monkeypatch, tmp_path, check=True)
    w.run()
    assert w.founded == [("h1", True, False)]  # _found's own check mode says "would found", after the play
    assert not w.joined


def test_play_tells_each_host_done_as_soon_as_it_is(tmp_path):
    """Runner.play's on_done: on the host's thread, before the other hosts are done."""
    r = Runner("test", console=Console(file=io.StringIO()), log=RunLog("test", base=tmp_path))
    h1_done = threading.Event()
    seen: list[tuple[str, str, bool]] = []

    def steps_for(h, conn):
        def step(ctx):
            if ctx.host.name == "h2":  # h2 finishes only once h1 was reported done
                assert h1_done.wait(5)
            return ("failed", "no", "") if ctx.host.name == "h2" else ("ok", "", "")

        return Ctx(host=h, conn=conn, vars={}), [("step", step)], []

    def on_done(h, state):
        seen.append((h.name, state, threading.current_thread() is threading.main_thread()))
        if h.name == "h1":
            h1_done.set()

    out = r.play([host("h1"), host("h2")], steps_for, "t", on_done=on_done)
    assert out == {"h1": "ok", "h2": "failed"}
    assert seen == [("h1", "ok", False), ("h2", "failed", False)]


def test_the_founders_upload_goes_first(monkeypatch, tmp_path):
    """On fresh hosts the others' release uploads wait for the founder's (modules.release)."""
    w = World(monkeypatch, tmp_path)
    w.run()
    assert isinstance(w.gate, bs.UploadGate) and w.gate.first.name == "h1"
    assert World(monkeypatch, tmp_path, members={"h1": {"role": "manager"}}).run() is not None


@pytest.mark.parametrize("how", ["uploaded", "no upload needed", "play ended"])
def test_upload_gate_lets_the_others_go_once_the_first_is_through(how):
    gate = bs.UploadGate(host("h1"))
    went: list[str] = []
    t = threading.Thread(target=lambda: (gate.wait(host("h2")), went.append("h2")))
    t.start()
    gate.wait(host("h1"))  # the first never waits
    t.join(0.2)
    assert went == []
    gate.done(host("h3"))  # another host's upload opens nothing
    t.join(0.2)
    assert went == []
    gate.done(host("h1"))  # modules.release after the upload, or without one; _Founder.host_done at the end
    t.join(5)
    assert went == ["h2"]
