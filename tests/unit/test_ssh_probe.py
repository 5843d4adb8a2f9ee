"""HostConn.probe: a role's looks in one SSH round trip, each answered once, and dropped as
soon as anything may have changed the host. The round trip here is a real local shell in
place of SSH (the script, its quoting and the parsing of its output are what is tested)."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest

from swarmkit_py.deploy.inventory import Host
from swarmkit_py.deploy.ssh import HostConn, stale


class LocalShell:
    """Stands in for fabric's Connection: its exec channels run with sh on this machine.
    `commands` lists what the host was asked to run: each exec channel's command, and each
    command given to a shell session (HostConn's `_Shell`), not the session itself."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.sessions = 0
        self.feeds: list[bytes] = []  # what each exec channel was sent, one entry per sendall
        self.refuse_sessions = False

    @property
    def client(self):
        """paramiko's side of the connection: exec channels, run here by sh."""
        shell = self
        return SimpleNamespace(get_transport=lambda: SimpleNamespace(
            open_session=lambda timeout=None: LocalChannel(shell)))


class LocalChannel:
    """An exec channel whose command runs with sh on this machine, its output read as
    paramiko's channel gives it (either stream whenever it has some; `fileno` for select)."""

    def __init__(self, shell: LocalShell) -> None:
        self.shell, self.proc, self.session = shell, None, False
        self.status_event = threading.Event()
        self.out, self.err = bytearray(), bytearray()
        self.lock = threading.Lock()
        self.eof_received = self.closed = False
        self._r, self._w = os.pipe()
        self._open = 2

    def settimeout(self, t) -> None:
        pass

    def exec_command(self, cmd: str) -> None:
        self.session = cmd == "exec sh" or cmd.endswith("-- sh")
        if not self.session:
            self.shell.commands.append(cmd)
        else:
            self.shell.sessions += 1
            if self.shell.refuse_sessions:  # as `sudo -n` refusing the login user
                cmd = "echo 'sudo: a password is required' >&2; exit 1"
        self.proc = subprocess.Popen(["sh", "-c", cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env={**os.environ, "SHELL": "/bin/sh"})
        for src, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(src, buf), daemon=True).start()

    def _pump(self, src, buf: bytearray) -> None:
        while chunk := os.read(src.fileno(), 65536):
            with self.lock:
                buf += chunk
            os.write(self._w, b"x")
        with self.lock:
            self._open -= 1
            if self._open == 0:
                self.eof_received = True
        os.write(self._w, b"x")
        if self._open == 0:
            self.proc.wait()
            self.status_event.set()

    def fileno(self) -> int:
        return self._r

    def sendall(self, b) -> None:
        if self.session:
            text = bytes(b).decode()
            if text.startswith("(umask 077; base64 -d > "):  # HostConn.put's write
                self.shell.commands.append(text.split("\n", 1)[0])
            elif shlex.split(text)[1:2] == ["-c"]:  # not the session's own first `true`
                self.shell.commands.append(shlex.split(text)[2])
        else:
            self.shell.feeds.append(bytes(b))
        self.proc.stdin.write(b)
        self.proc.stdin.flush()

    def shutdown_write(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # the command ended already
            self.proc.stdin.close()

    def _take(self, buf: bytearray, n: int) -> bytes:
        with self.lock:
            got = bytes(buf[:n])
            del buf[:n]
        with contextlib.suppress(BlockingIOError):
            os.set_blocking(self._r, False)
            os.read(self._r, 65536)
        return got

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv(self, n: int) -> bytes:
        return self._take(self.out, n)

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv_stderr(self, n: int) -> bytes:
        return self._take(self.err, n)

    def recv_exit_status(self) -> int:
        self.status_event.wait()
        return self.proc.returncode

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self.closed = True


def conn() -> tuple[HostConn, LocalShell]:
    h = Host(name="h1", address="127.0.0.1", port=22, user="root", key_file=None, become=False,
             known_hosts=None, groups=(), vars={})
    c = HostConn(h)
    shell = LocalShell()
    c._conn = shell
    return c, shell


def test_probed_commands_are_answered_once_from_one_round_trip(tmp_path):
    (tmp_path / "f").write_text("a'b\n\nlast line with spaces  \n")
    c, shell = conn()
    looks = [f"cat {tmp_path}/f", "echo out; echo err >&2; (exit 3)", f"test -d {tmp_path}/nope", "printf 'no newline'",
             "echo one # a comment"]
    c.probe(looks)
    assert len(shell.commands) == 1
    r = c.run(looks[0])
    assert (r.rc, r.stdout, r.stderr) == (0, "a'b\n\nlast line with spaces  \n", "")
    r = c.run(looks[1])
    assert (r.rc, r.stdout) == (3, "out\n")  # stderr is not kept
    assert c.run(looks[2]).rc == 1
    assert (c.run(looks[3]).stdout, c.run(looks[4]).stdout) == ("no newline", "one\n")
    assert len(shell.commands) == 1
    # each answer is used once: asking again really runs the command
    assert c.run(looks[0]).stdout.startswith("a'b") and len(shell.commands) == 2


def test_any_other_command_or_upload_drops_the_answers(tmp_path):
    f = tmp_path / "f"
    f.write_text("before")
    c, shell = conn()
    c.probe([f"cat {f}", "echo x"])
    c.run(f"echo after > {f}")  # a change: what was probed may be stale now
    assert c.run(f"cat {f}").stdout == "after\n"
    c.probe([f"cat {f}"])
    c.put("data", str(tmp_path / "g"))
    n = len(shell.commands)
    c.run(f"cat {f}")
    assert len(shell.commands) == n + 1


def test_a_change_that_says_what_it_touches_keeps_the_other_answers(tmp_path):
    """A fresh host's first `mkdir` used to send every later step back to ask again."""
    root, etc = tmp_path / "opt", tmp_path / "etc"
    c, shell = conn()
    looks = {name: f"stat -c %F {p} 2>/dev/null || echo none"
             for name, p in (("root", root), ("rel", root / "rel"), ("marker", root / "rel" / "m"), ("etc", etc))}
    c.probe([(looks["root"], [str(root)]), (looks["rel"], [str(root / "rel")]),
             (looks["marker"], [str(root / "rel" / "m")]), (looks["etc"], [str(etc)]), "echo unnamed"])
    # mkdir -p of rel/m's directory: rel and what is above it may differ now; etc may not
    c.run(f"mkdir -p {root / 'rel'}", changes=[str(root / "rel")])
    n = len(shell.commands)
    assert c.run(looks["etc"]).stdout == "none\n" and c.run(looks["marker"]).stdout == "none\n"
    assert len(shell.commands) == n  # both still answered by the probe
    assert c.run(looks["root"], changes=()).stdout == "directory\n"  # asked again: it was made
    assert c.run(looks["rel"], changes=()).stdout == "directory\n"
    assert c.run("echo unnamed").stdout == "unnamed\n" and len(shell.commands) == n + 3  # names nothing: dropped


def test_a_tree_change_drops_what_is_below_and_an_unsaid_one_drops_all(tmp_path):
    c, shell = conn()
    c.probe([("cat /x/rel/m", ["/x/rel/m"]), ("cat /x/other", ["/x/other"]), ("iptables -L", ["@iptables"])])
    c.run("true", changes=["/x/rel/"])  # rm -rf /x/rel; unpack into it
    n = len(shell.commands)
    c.run("cat /x/other")
    c.run("iptables -L")
    assert len(shell.commands) == n
    c.probe([("cat /x/other", ["/x/other"]), ("iptables -L", ["@iptables"])])
    c.run("true")  # says nothing: may have changed anything
    c.run("cat /x/other")
    assert len(shell.commands) == n + 3


def test_stale():
    assert stale("/a/b", "/a/b") and stale("/a", "/a/b/c")  # the path, and what mkdir -p makes above it
    assert not stale("/a/b/c", "/a/b") and stale("/a/b/c", "/a/b/")  # below: only a tree change
    assert not stale("/a/bc", "/a/b/") and not stale("/a/b", "/a/bc")
    assert stale("@iptables", "@iptables") and not stale("@iptables", "/a") and not stale("/a", "@processes")
    assert stale("a/b", "/x") and stale("/x", "b")  # relative: where it points is not known here


def test_common_role_makes_its_directories_in_one_command_and_a_rerun_changes_nothing(tmp_path):
    """roles/common's directories: probed with the facts, made by ONE command on a fresh
    host (was one per directory), reported ok when all are right, a wrong mode fixed."""
    from swarmkit_py.deploy import roles
    from swarmkit_py.deploy.runner import Ctx

    role = roles.Role("common")
    (step,) = role.tasks
    v = {"swarmkit_root": str(tmp_path / "opt"), "swarmkit_config_dir": str(tmp_path / "etc"),
         "swarmkit_state_dir": str(tmp_path / "lib"), "swarmkit_log_dir": str(tmp_path / "log")}

    def play(check: bool = False):
        c, shell = conn()
        ctx = Ctx(host=c.host, conn=c, vars=v, check=check)
        c.probe(roles._looks(role, step, v))
        return roles._bind(role, step)(ctx), shell.commands

    (status, msg, _), cmds = play(check=True)
    assert status == "changed" and len(cmds) == 1 and not (tmp_path / "opt").exists()
    (status, msg, _), cmds = play()
    assert status == "changed" and len(cmds) == 2, cmds  # the probe, then one mkdir for all six
    assert msg.count(str(tmp_path)) == 6
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "opt", tmp_path / "opt" / "releases",
                                                               tmp_path / "lib", tmp_path / "log")}
    assert modes == {"opt": "0o755", "releases": "0o755", "lib": "0o700", "log": "0o755"}
    assert play()[0] == ("ok", "", "")
    (tmp_path / "lib").chmod(0o755)
    (status, msg, _), _ = play()
    assert (status, msg) == ("changed", str(tmp_path / "lib")) and (tmp_path / "lib").stat().st_mode & 0o777 == 0o700


def test_directories_refuses_an_entry_it_would_misread(tmp_path):
    from swarmkit_py.deploy import modules
    from swarmkit_py.deploy.runner import Ctx

    c, _ = conn()
    ctx = Ctx(host=c.host, conn=c, vars={})
    status, msg, _ = modules.directories(ctx, [{"path": str(tmp_path / "a"), "mod": "0700"}])
    assert status == "failed" and "dirs[0]" in msg and not (tmp_path / "a").exists()
    status, msg, _ = modules.directories(ctx, [{"path": str(tmp_path / "a"), "mode": "rwx"}])
    assert status == "failed" and "octal" in msg


def test_uploads_go_through_cat_on_an_exec_channel(tmp_path):
    """put/put_file write through `cat` on an exec channel (not SFTP: 2-3x the operator's CPU
    per byte, issue 13), or a small file through the shell session, private until the
    install gives the file its mode and name."""
    c, shell = conn()
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 5000)
    c.put_file(str(big), str(tmp_path / "out" / "big.bin"), 0o640)
    c.put("text ü\n", str(tmp_path / "t.txt"))
    assert (tmp_path / "out" / "big.bin").read_bytes() == big.read_bytes()
    assert (tmp_path / "out" / "big.bin").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "t.txt").read_text() == "text ü\n" and (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o644
    assert sum(cmd.startswith("umask 077; cat > /tmp/.skpy-") for cmd in shell.commands) == 1
    # a small file goes through the shell session, in a here-document (no new channel, not on
    # a command line); a large one on a channel of its own
    assert sum(cmd.startswith("(umask 077; base64 -d > /tmp/.skpy-") for cmd in shell.commands) == 1
    c.put(bytes(range(256)) * 1100, str(tmp_path / "big2.bin"))
    assert (tmp_path / "big2.bin").read_bytes() == bytes(range(256)) * 1100
    assert sum(cmd.startswith("umask 077; cat > /tmp/.skpy-") for cmd in shell.commands) == 2


def test_an_upload_the_host_refuses_says_why(tmp_path, monkeypatch):
    c, shell = conn()
    monkeypatch.setattr("swarmkit_py.deploy.ssh.uuid.uuid4", lambda: SimpleNamespace(hex="x/../no/such/dir/f"))
    with pytest.raises(RuntimeError, match="h1: could not write /tmp/.skpy-x/../no/such/dir/f: .*"):
        c.put("data", str(tmp_path / "g"))


def test_the_connection_offers_aes_gcm_first():
    """GCM authenticates within the cipher (aes-ctr needs a Python-level HMAC per packet);
    every cipher paramiko offers is still offered, so a server without GCM connects as before."""
    import paramiko

    from swarmkit_py.deploy.ssh import _gcm_first_transport

    t = _gcm_first_transport()
    assert issubclass(t, paramiko.Transport) and t is _gcm_first_transport()
    assert t._preferred_ciphers[:2] == ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
    assert sorted(t._preferred_ciphers) == sorted(paramiko.Transport._preferred_ciphers)


def test_commands_run_in_one_shell_session_each_as_on_its_own_channel(tmp_path):
    """A connection's commands go to ONE shell session (a channel per command cost each a
    round trip and sshd's session set-up, ~50 ms on a loaded lab host), and each still runs
    as `$SHELL -c cmd` did: its own exit status, stdout and stderr exactly, nothing it sets
    left for the next, a syntax error or `exit` failing that command alone."""
    c, shell = conn()
    r = c.run("echo out; echo err >&2; printf 'no newline'; exit 3")
    assert (r.rc, r.stdout, r.stderr) == (3, "out\nno newline", "err\n")
    assert c.run(f"cd {tmp_path}; X=1; export Y=2").rc == 0
    assert c.run("pwd; echo \"${X:-unset} ${Y:-unset}\"").stdout == f"{os.getcwd()}\nunset unset\n"
    r = c.run("if then fi")
    assert r.rc == 2 and "syntax error" in r.stderr.lower()
    assert c.run("read x; echo \"[$x]\"").stdout == "[]\n"  # stdin is empty, not the session's
    assert c.run("exec echo replaced").stdout == "replaced\n"
    big = c.run("head -c 300000 /dev/zero | tr '\\0' a; head -c 200000 /dev/zero | tr '\\0' b >&2")
    assert (len(big.stdout), set(big.stdout), len(big.stderr), set(big.stderr)) == (300000, {"a"}, 200000, {"b"})
    assert c.run("printf '\\n\\n'").stdout == "\n\n" and c.run("true").stdout == ""
    assert shell.sessions == 1 and len(shell.commands) == 9


def test_input_is_written_at_once_on_a_channel_of_its_own():
    """A command given input (the unlock key, sudo's password) gets an exec channel of its
    own, the input written in one piece (invoke fed it a byte per 10 ms)."""
    c, shell = conn()
    key = "SWMKEY-1-" + "x" * 43 + "\n"
    t0 = time.monotonic()
    r = c.run("read k; echo \"got $k\"; cat", stdin=key + "more\n")
    assert (r.rc, r.stdout) == (0, f"got {key.strip()}\nmore\n")
    assert time.monotonic() - t0 < 0.4 and shell.feeds == [(key + "more\n").encode()]
    assert shell.sessions == 0 and shell.commands == ["read k; echo \"got $k\"; cat"]


def test_a_command_that_outlives_its_timeout_fails_as_before_and_the_next_runs():
    from invoke.exceptions import CommandTimedOut

    c, shell = conn()
    assert c.run("echo first").stdout == "first\n"
    with pytest.raises(CommandTimedOut, match="did not complete within 0.3 seconds"):
        c.run("sleep 5", timeout=0.3)
    assert c.run("echo after").stdout == "after\n" and shell.sessions == 2


def test_without_a_session_every_command_gets_its_own_channel():
    """`sudo -n` refusing the session (or no shell for it): each command on its own channel,
    where sudo's refusal is reported for that command as before."""
    c, shell = conn()
    shell.refuse_sessions = True
    assert c.run("echo one").stdout == "one\n" and c.run("echo two; exit 4").rc == 4
    assert shell.sessions == 1 and shell.commands == ["echo one", "echo two; exit 4"]
