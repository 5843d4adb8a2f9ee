"""SSH to inventory hosts: fabric connections with real host-key checking, and fan-out.

Fabric's Connection trusts any host key on first use (AutoAddPolicy); against real machines
that defeats SSH's one defence against a man in the middle. Here the host's known_hosts file
(`swarmkit_known_hosts_file`, `-o UserKnownHostsFile=` in `ansible_ssh_common_args`, or
`~/.ssh/known_hosts`) is loaded and paramiko's RejectPolicy is set, so an unknown or changed
key stops that host with a message.

`ansible_become` runs every command as `ansible_become_user` (root) through sudo, never on a
TTY (an agentless run must never hang on a prompt). Without `ansible_become_password` it is
`sudo -n` (passwordless sudo, as on GCE or Vagrant); with one, `sudo -S -k -p ''` gets the
password on the command's stdin: never on a command line (where `ps` and our log would show
it), `-k` so sudo always consumes it (a cached credential would leave it for the command to
read), and the password is registered with the run log, which masks it wherever it appears.
Files the login user cannot read (keys made by root) are read through sudo too.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import re
import select
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import variables
from .inventory import Host


class Unreachable(Exception):
    """The host could not be reached or refused us: reported per host, not fatal by itself."""


class HostKeyError(Exception):
    """The host's key is unknown or changed: the run stops for that host."""


class BecomeError(Exception):
    """sudo refused the login user (wrong password, no sudoers entry): that host fails."""


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class HostConn:
    """One SSH connection to one host, opened lazily and reused for every step."""

    def __init__(self, host: Host, timeout: float = 10.0, log: Callable[[str], None] | None = None):
        self.host = host
        self.timeout = timeout
        self._conn = None
        self._log = log or (lambda s: None)
        self._become_password: str | None = None
        self._probed: dict[str, tuple[Result, tuple[str, ...] | None]] = {}  # probe(): answer, what it read
        self._shell: _Shell | None = None
        self._shell_lock = threading.Lock()
        self._shell_failed = False

    def _sudo_password(self) -> str | None:
        """`ansible_become_password`, templated now (lookup('env'/'file')), masked in the log."""
        raw = self.host.vars.get("ansible_become_password")
        if raw is None or not self.host.become:
            return None
        if self._become_password is None:
            try:
                pw = variables.render(str(raw), self.host.vars)
            except variables.VariableError as e:
                raise BecomeError(f"{self.host.name}: ansible_become_password: {e}") from None
            redact = getattr(self._log, "redact", None)
            if redact is not None:
                redact(pw)
            self._become_password = pw
        return self._become_password

    def _open(self):
        if self._conn is not None:
            return self._conn
        import paramiko  # here, not at import: commands that need no SSH (docker-env, status with
        from fabric import Connection  # a client bundle) start faster without paramiko and fabric

        h = self.host
        kw = {"look_for_keys": h.key_file is None, "allow_agent": h.key_file is None,
              "banner_timeout": self.timeout, "auth_timeout": self.timeout,
              "transport_factory": _gcm_first_transport()}
        if h.key_file is not None:
            kw["key_filename"] = str(h.key_file)
        c = Connection(h.address, user=h.user, port=h.port, connect_timeout=self.timeout, connect_kwargs=kw)
        if h.known_hosts is not None and h.known_hosts.exists():
            c.client.load_host_keys(str(h.known_hosts))
        c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            c.open()
        except paramiko.BadHostKeyException as e:
            raise HostKeyError(f"{h.name}: host key CHANGED for {h.address} (known_hosts {h.known_hosts}): "
                               f"got {e.key.get_name()} {e.key.get_base64()[:24]}...; refusing to connect "
                               "(possible man in the middle, or the host was reinstalled: fix known_hosts)") from None
        except paramiko.SSHException as e:
            if "not found in known_hosts" in str(e):
                raise HostKeyError(f"{h.name}: {h.address} is not in known_hosts ({h.known_hosts}); "
                                   "add its key (ssh-keyscan, checked out of band) before deploying") from None
            raise Unreachable(f"{h.name}: ssh {h.user}@{h.address}:{h.port}: {e}") from None
        except (OSError, EOFError) as e:
            raise Unreachable(f"{h.name}: ssh {h.user}@{h.address}:{h.port}: {e or type(e).__name__}") from None
        self._conn = c
        return c

    def close(self) -> None:
        if self._shell is not None:
            self._shell.close()
            self._shell = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def probe(self, looks: Iterable[str | tuple[str, Iterable[str] | None]]) -> None:
        """Run read-only commands (looks: stat, cat, readlink...) in ONE round trip, and let
        `run` answer each of them once from what they printed, as long as nothing changed on
        the host what it looked at. A role's steps each look before they act; probing all
        their looks with the facts makes a run that changes nothing one round trip per host
        instead of twenty.

        A look is a command, or (command, what it reads): the paths it looks at (`stale`
        says which changes touch them) and `@names` for state that is not a file (`@iptables`,
        `@processes`); a look that names nothing is dropped at any change. A change is any
        other command or upload: one that says which paths it `changes` drops only the
        answers about those (so a fresh host's first `mkdir` does not send every later step
        back to ask again); one that does not say drops every answer not yet used.

        The looks run one after the other in the same shell (no subshell, no temp file: on a
        loaded host every fork costs), so they must not `exit`; their stdout is framed by a
        random marker line carrying the exit code; their stderr is not kept."""
        reads: dict[str, tuple[str, ...] | None] = {}
        for look in looks:
            cmd, paths = (look, None) if isinstance(look, str) else look
            reads.setdefault(cmd, tuple(paths) if paths is not None else None)
        cmds = list(reads)
        if not cmds:
            return
        mark = f"@skpy-probe-{uuid.uuid4().hex}"
        script = "".join(f"{{ {cmd}\n}} 2>/dev/null </dev/null; printf '\\n{mark} {i} %d\\n' $?\n"
                         for i, cmd in enumerate(cmds))
        r = self.run(script, log_output=False, changes=())
        got: dict[str, tuple[Result, tuple[str, ...] | None]] = {}
        pos = 0
        for m in re.finditer(rf"\n{mark} (\d+) (\d+)\n", r.stdout):
            i = int(m.group(1))
            if i < len(cmds):
                got[cmds[i]] = (Result(int(m.group(2)), r.stdout[pos:m.start()], ""), reads[cmds[i]])
            pos = m.end()
        self._probed = got

    def _changed(self, changes: Iterable[str] | None) -> None:
        """Drop the probed answers a change may have made stale (all of them when it does not
        say what it changes)."""
        if changes is None:
            self._probed = {}
            return
        changes = tuple(changes)
        if changes:
            self._probed = {cmd: (r, reads) for cmd, (r, reads) in self._probed.items()
                            if reads is not None and not any(stale(look, c) for look in reads for c in changes)}

    def run(self, cmd: str, timeout: float | None = 120.0, log_output: bool = True,
            stdin: str | None = None, changes: Iterable[str] | None = None) -> Result:
        """Run a shell command (as root via sudo when become is set). Never raises on a
        non-zero exit: callers decide what a failure means. `log_output=False` keeps stdout
        out of the run log (file contents that are secrets). `stdin`: text for the command's
        standard input (a secret such as the unlock key travels this way, after sudo's
        password when there is one, never on a command line); it is not logged. `changes`:
        the paths the command may change (`stale`), `()` for a read-only command; unsaid,
        it may have changed anything (see `probe`)."""
        probed = self._probed.pop(cmd, None) if stdin is None else None
        if probed is not None:
            self._log_result(cmd, probed[0], log_output, " (answered by the probe)")
            return probed[0]
        self._changed(changes)
        self._open()
        t0 = time.monotonic()
        feed: list[str] = []
        pw = self._sudo_password() if self.host.become else None
        res = self._in_shell(cmd, timeout) if stdin is None and pw is None else None
        if res is None:
            full = cmd
            if self.host.become:
                as_user = f"-u {shlex.quote(self.host.become_user)} "
                if pw is None:
                    full = f"sudo -n {as_user}-- sh -c {shlex.quote(cmd)}"
                else:
                    # sudo reads its password a byte at a time up to the newline: the rest of
                    # stdin is left for the command
                    full = f"sudo -S -k -p '' {as_user}-- sh -c {shlex.quote(cmd)}"
                    feed.append(pw + "\n")
            if stdin is not None:
                feed.append(stdin)
            res = self._exec(cmd, full, "".join(feed).encode() if feed else None, timeout)
        self._log_result(cmd, res, log_output, f" ({time.monotonic() - t0:.2f} s)")
        if self.host.become and res.rc == 1 and _sudo_refused(res.stderr):
            raise BecomeError(f"{self.host.name}: sudo as {self.host.user} refused: {res.stderr.strip()[-300:]} "
                              "(check ansible_become_password, or the sudoers entry of the login user)")
        return res

    def _exec(self, cmd: str, full: str, feed: bytes | None, timeout: float | None) -> Result:
        """`full` on an exec channel of its own: `feed` (sudo's password, the command's
        stdin) written at once, then end of input. invoke, which ran these before, fed a
        command's stdin a byte per 10 ms (its `input_sleep`): a 40-byte unlock key and a
        password cost 0.5 s per command."""
        import paramiko

        try:
            ch = self._conn.client.get_transport().open_session(timeout=self.timeout)
            try:
                ch.exec_command(full)
                if feed:
                    try:
                        ch.sendall(feed)
                    except OSError:  # the command ended without reading it all: its status says why
                        pass
                ch.shutdown_write()
                out, err, rc = _collect(ch, timeout)
            finally:
                ch.close()
        except (OSError, EOFError, paramiko.SSHException) as e:
            self.close()
            raise Unreachable(f"{self.host.name}: connection lost running {cmd[:60]!r}: {e}") from None
        if rc is None:
            raise _timed_out(cmd, out, err, timeout)
        return Result(rc, out, err)

    def _in_shell(self, cmd: str, timeout: float | None) -> Result | None:
        """`cmd` run by the host's shell session (`_Shell`), or None when this connection has
        none (it could not start one, or another thread is using it): the caller then runs
        the command on an exec channel of its own."""
        try:
            return self._shell_run(cmd, timeout, None, f"running {cmd[:60]!r}")
        except TimeoutError as e:
            raise _timed_out(cmd, *e.args, timeout) from None

    def _shell_run(self, script: str, timeout: float | None, inner: str | None, what: str) -> Result | None:
        """`_Shell.run` on this connection's session, started at first use; None when there
        is none (it could not be started, or another thread holds it). A timeout drops the
        session (the command may still be running) and raises TimeoutError; a session that
        ended closes the connection and raises Unreachable, saying `what` was being done."""
        if self._shell_failed or not self._shell_lock.acquire(blocking=False):
            return None
        try:
            if self._shell is None:
                self._shell = _Shell.start(self)
                if self._shell is None:
                    self._shell_failed = True
                    return None
            try:
                return self._shell.run(script, timeout, inner=inner)
            except TimeoutError:
                self._shell.close()
                self._shell = None
                raise
            except Unreachable as e:
                self.close()
                raise Unreachable(f"{self.host.name}: connection lost {what}: {e}") from None
        finally:
            self._shell_lock.release()

    def _log_result(self, cmd: str, r: Result, log_output: bool, how: str = "") -> None:
        out = r.stdout.strip() if log_output else f"({len(r.stdout)} bytes, not logged)"
        self._log(f"[{self.host.name}] $ {cmd}{how}\n  rc={r.rc}"
                  + (f"\n  out: {out[:2000]}" if r.stdout.strip() else "")
                  + (f"\n  err: {r.stderr.strip()[:2000]}" if r.stderr.strip() else ""))

    @staticmethod
    def read_cmd(path: str) -> str:
        """The command `read` runs (a look modules probe ahead)."""
        return f"test -f {shlex.quote(path)} && base64 -w0 {shlex.quote(path)}"

    def read(self, path: str, secret: bool = False) -> bytes | None:
        """A remote file's bytes (read as root when become is set), or None if it does not
        exist. `secret`: its contents are kept out of the run log."""
        r = self.run(self.read_cmd(path), log_output=not secret, changes=())
        if r.rc != 0:
            return None
        return base64.b64decode(r.stdout.strip())

    def put(self, data: bytes | str, path: str, mode: int = 0o644) -> None:
        """Write a file atomically: upload beside a temp name, set the mode, rename over."""
        raw = data.encode() if isinstance(data, str) else data
        tmp = f"/tmp/.skpy-{uuid.uuid4().hex}"
        self._changed((tmp,))
        if len(raw) > SHELL_PUT_MAX or not self._write_in_shell(raw, tmp):
            self._send(io.BytesIO(raw), tmp)
        self._install(tmp, path, mode)

    def _write_in_shell(self, raw: bytes, tmp: str) -> bool:
        """Write `raw` to the new file `tmp` through the host's shell session (a here-document
        the session's own shell decodes: on no command line, so not in `ps`, and not logged),
        as `_send` does on a channel of its own; False when the connection has no session.
        A config file or script then costs a round trip on the open session instead of a new
        channel's (two of them on a fresh host's way to its agent)."""
        b64 = base64.encodebytes(raw).decode()
        script = f"(umask 077; base64 -d > {shlex.quote(tmp)}) <<'SKPY_EOF'\n{b64}SKPY_EOF"
        try:
            r = self._shell_run(script, 60.0, "", f"writing {tmp}")
        except TimeoutError:
            raise Unreachable(f"{self.host.name}: no answer in 60s writing {tmp}") from None
        if r is None:
            return False
        self._log(f"[{self.host.name}] wrote {tmp} (shell, rc={r.rc})")
        if r.rc != 0:
            raise RuntimeError(f"{self.host.name}: could not write {tmp}: {r.stderr.strip()}")
        return True

    def put_file(self, local: str, path: str, mode: int = 0o644) -> None:
        tmp = f"/tmp/.skpy-{uuid.uuid4().hex}"
        self._changed((tmp,))
        with open(local, "rb") as f:
            self._send(f, tmp)
        self._install(tmp, path, mode)

    def _send(self, src, tmp: str, timeout: float = 600.0) -> None:
        """Write the stream `src` to the new file `tmp` on the host, as the login user: `cat`
        on an SSH exec channel. SFTP (paramiko's, what fabric's put uses) cost the operator
        2-3x the CPU per byte (every 32 KB write a request answered one by one, a stat after)
        and the host an sftp-server process; a release is 13 MB, seven at once on a
        bootstrap's path (bench/README.md, round 10)."""
        import paramiko

        ch = self._open().client.get_transport().open_session(timeout=self.timeout)
        try:
            ch.settimeout(timeout)
            ch.exec_command(f"umask 077; cat > {shlex.quote(tmp)}")
            try:
                while chunk := src.read(1 << 18):
                    ch.sendall(chunk)
            except OSError:  # the command ended early (no room, no such directory): its status says why
                pass
            ch.shutdown_write()
            if not ch.status_event.wait(timeout):
                raise Unreachable(f"{self.host.name}: no answer in {timeout:.0f}s writing {tmp}")
            err = b""
            while ch.recv_stderr_ready():
                err += ch.recv_stderr(65536)
            rc = ch.recv_exit_status()
        except (OSError, EOFError, paramiko.SSHException) as e:
            self.close()
            raise Unreachable(f"{self.host.name}: connection lost writing {tmp}: {e}") from None
        finally:
            ch.close()
        self._log(f"[{self.host.name}] wrote {tmp} (cat, rc={rc})")
        if rc != 0:
            raise RuntimeError(f"{self.host.name}: could not write {tmp}: {err.decode(errors='replace').strip()}")

    def _install(self, tmp: str, path: str, mode: int) -> None:
        q = shlex.quote(path)
        own = f"chown 0:0 {tmp} && " if self.host.become else ""
        r = self.run(f"mkdir -p $(dirname {q}) && {own}chmod {mode:o} {tmp} && "
                     f"mv -f {tmp} {q}.skpy-new && mv -f {q}.skpy-new {q}", changes=(tmp, path, f"{path}.skpy-new"))
        if r.rc != 0:
            self.run(f"rm -f {tmp}", changes=(tmp,))
            raise RuntimeError(f"{self.host.name}: could not write {path}: {r.stderr.strip()}")

    def get(self, path: str, local: str, secret: bool = False) -> None:
        """Copy a remote file here. With become it is read through sudo (the login user may
        not be able to read it); `secret` keeps its contents out of the run log."""
        if not self.host.become:
            self._open().get(path, local)
            return
        data = self.read(path, secret=secret)
        if data is None:
            raise RuntimeError(f"{self.host.name}: {path}: no such file")
        with open(local, "wb") as f:
            f.write(data)


SHELL_PUT_MAX = 256 << 10
"""Files up to this size are written through the host's shell session (`HostConn.put`)."""


class _Shell:
    """One long-lived shell on the host (an exec channel running `sh`) that runs a
    connection's commands one after the other, each framed by a marker line with its exit
    status on stdout and a marker line on stderr. Every command on its own exec channel
    cost a bootstrap's host ~50 ms of sshd's session set-up (a round trip to open the
    channel, sshd forking the session, the login shell), eleven of them on a fresh host's way
    and the founder's on every join's (bench/README.md, round 11); here it costs a fork and
    exec of the shell that runs it. Each command still runs as it did on its own channel:
    `$SHELL -c cmd` as the login user, `sh -c cmd` under `sudo -n` (the whole session is then
    one `sudo -n -u user -- sh`), so a syntax error fails that command alone, `exit` and
    `exec` end that command alone, and nothing it sets (cwd, variables) outlives it. Its
    stdin is /dev/null (on its own channel nothing was ever written to it). Commands that
    are given input (stdin, sudo's password) still get a channel of their own."""

    def __init__(self, ch, inner: str, mark: str):
        self.ch, self.inner, self.mark, self.n = ch, inner, mark, 0

    @classmethod
    def start(cls, hc: HostConn) -> _Shell | None:
        """The session, or None if the host would not start it (sudo refused, no `sh`)."""
        import paramiko

        h = hc.host
        if h.become:
            driver, inner = f"sudo -n -u {shlex.quote(h.become_user)} -- sh", "sh"
        else:
            driver, inner = "exec sh", '"${SHELL:-/bin/sh}"'
        try:
            ch = hc._conn.client.get_transport().open_session(timeout=hc.timeout)
            ch.exec_command(driver)
        except (OSError, EOFError, paramiko.SSHException):
            return None
        sh = cls(ch, inner, f"@skpy-sh-{uuid.uuid4().hex}")
        try:
            r = sh.run("true", hc.timeout, inner="")
        except (Unreachable, TimeoutError):
            r = None
        if r is None or r.rc != 0:
            sh.close()
            return None
        return sh

    def run(self, cmd: str, timeout: float | None, inner: str | None = None) -> Result:
        """Run `cmd` and wait for its markers. Raises TimeoutError (the command may still be
        running: the caller drops the session) or Unreachable (the session ended)."""
        import paramiko

        self.n += 1
        n, mark = self.n, self.mark
        # inner "": `cmd` is run by the session's shell itself (its first `true`, a write's
        # here-document), never with the command's own input
        run = f"{self.inner if inner is None else inner} -c {shlex.quote(cmd)} </dev/null" if inner != "" else cmd
        line = (f"{run}\nprintf '\\n{mark} {n} %d\\n' $?; printf '\\n{mark} {n}\\n' >&2\n").encode()
        out_end = re.compile(rb"\n" + re.escape(f"{mark} {n} ".encode()) + rb"(\d+)\n")
        err_end = b"\n" + f"{mark} {n}\n".encode()
        out, err = bytearray(), bytearray()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self.ch.sendall(line)
            while True:
                m = out_end.search(out)
                if m is not None and err.endswith(err_end):
                    return Result(int(m.group(1)), _text(out[:m.start()]), _text(err[:-len(err_end)]))
                if not _pump(self.ch, out, err, deadline):
                    raise TimeoutError(_text(out), _text(err))
                if self.ch.eof_received and not self.ch.recv_ready() and not self.ch.recv_stderr_ready():
                    raise Unreachable("the shell session ended")
        except (OSError, EOFError, paramiko.SSHException) as e:
            if isinstance(e, TimeoutError):
                raise
            raise Unreachable(str(e)) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ch.close()


def _text(b: bytes | bytearray) -> str:
    return bytes(b).decode("utf-8", errors="replace")


def _pump(ch, out: bytearray, err: bytearray, deadline: float | None) -> bool:
    """Wait for what the channel has (at most until `deadline`) and append it; False once
    the deadline passed with nothing new."""
    if not (ch.recv_ready() or ch.recv_stderr_ready() or ch.eof_received or ch.closed):
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            return False
        select.select([ch], [], [], wait)
    got = False
    while ch.recv_ready():
        out += ch.recv(1 << 16)
        got = True
    while ch.recv_stderr_ready():
        err += ch.recv_stderr(1 << 16)
        got = True
    return got or deadline is None or time.monotonic() < deadline or ch.eof_received or ch.closed


def _collect(ch, timeout: float | None) -> tuple[str, str, int | None]:
    """An exec channel's stdout, stderr and exit status (None if `timeout` passed first):
    both streams read to their end, then the status (sshd may send the status before the
    last output)."""
    out, err = bytearray(), bytearray()
    deadline = None if timeout is None else time.monotonic() + timeout
    while not (ch.eof_received and not ch.recv_ready() and not ch.recv_stderr_ready()) and not ch.closed:
        if not _pump(ch, out, err, deadline):
            return _text(out), _text(err), None
    while ch.recv_ready() or ch.recv_stderr_ready():
        _pump(ch, out, err, deadline)
    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
    if not ch.status_event.wait(wait):
        return _text(out), _text(err), None
    return _text(out), _text(err), ch.recv_exit_status()


def _timed_out(cmd: str, out: str, err: str, timeout: float | None):
    """What a command that outlived its timeout raised when invoke ran it (its message)."""
    from invoke.exceptions import CommandTimedOut
    from invoke.runners import Result as InvokeResult

    return CommandTimedOut(InvokeResult(stdout=out, stderr=err, command=cmd, exited=-1), timeout)


@functools.cache
def _gcm_first_transport():
    """paramiko's Transport offering AES-GCM first (paramiko lists it last, after aes-ctr and
    aes-cbc): GCM authenticates within the cipher, where aes-ctr needs an HMAC computed for
    every packet through Python's hmac module. A release upload (13 MB) cost the operator
    0.11-0.13 s of CPU instead of 0.17-0.20 s (bench/README.md, round 10), seven at once on a
    bootstrap's path, and every command's packets less. The choice is still the server's
    among what both offer: one without GCM gets the rest of paramiko's list, as before."""
    import paramiko

    gcm = tuple(c for c in paramiko.Transport._preferred_ciphers if c.endswith("-gcm@openssh.com"))
    rest = tuple(c for c in paramiko.Transport._preferred_ciphers if c not in gcm)
    return type("GcmFirstTransport", (paramiko.Transport,), {"_preferred_ciphers": gcm + rest})


def stale(look: str, change: str) -> bool:
    """Whether a change to `change` may alter what a look at `look` saw. Paths: the path
    itself and the directories above it (`mkdir -p` makes those), and with a trailing `/`
    (`rm -rf`, unpacking into it) everything below it too. Names starting with `@` (state
    that is not a file) match only themselves; a relative path may be anything. Paths are
    compared as written: the role's paths are distinct directories, not symlinks into one
    another."""
    if look.startswith("@") or change.startswith("@"):
        return look == change
    if not look.startswith("/") or not change.startswith("/"):
        return True
    look, tree = look.rstrip("/") or "/", change.endswith("/")
    change = change.rstrip("/") or "/"
    if look == change or change.startswith(look.rstrip("/") + "/"):
        return True
    return tree and look.startswith(change.rstrip("/") + "/")


def _sudo_refused(stderr: str) -> bool:
    """sudo's own refusals (wrong password, no sudoers entry, a password needed with -n)."""
    return any(m in stderr for m in ("incorrect password attempt", "a password is required",
                                     "is not in the sudoers file", "may not run sudo", "no password was provided"))


def fan_out(items: Iterable, fn: Callable, forks: int = 10) -> list:
    """Run fn(item) for every item on up to `forks` threads; results in input order.
    Exceptions are returned in place of results so one host never aborts the others."""
    items = list(items)
    if not items:
        return []

    def safe(x):
        try:
            return fn(x)
        except Exception as e:  # returned to the caller, who reports it per host
            return e

    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(items)))) as ex:
        return list(ex.map(safe, items))
