"""Run role steps on many hosts and report like Ansible: ok / changed / failed / unreachable.

Each host runs its steps in order on its own SSH connection; hosts run in parallel (`forks`).
A failed step stops that host only; an unreachable host is recorded and skipped, and whether
that is fatal is the caller's decision (bootstrap needs every manager, not every worker).
`check` asks every module what it *would* change and changes nothing; `diff` shows template
diffs. Every run appends what it did (commands, exit codes, output) to a log file, because a
deployment that fails at 2 a.m. must be explainable from its log alone.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .inventory import Host
from .ssh import BecomeError, HostConn, HostKeyError, Unreachable, fan_out

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

# rich is imported where it draws (progress bars, the recap), not here: a read-only command
# such as `docker-env` prints plain lines and starts faster without it (issue 13).

REPO_ROOT = Path(__file__).resolve().parents[2]
STATUSES = ("ok", "changed", "failed", "unreachable", "skipped")


class RunLog:
    """One log file per operator command under `.lab/deploy-logs/` (git-ignored)."""

    def __init__(self, name: str, base: Path | None = None):
        base = base or Path(os.environ.get("SWARMKIT_DEPLOY_LOGS") or REPO_ROOT / ".lab" / "deploy-logs")
        base.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = base / f"{stamp}-{name}-{threading.get_ident() % 10000:04d}.log"
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._f = open(self.path, "a", buffering=1)

    def redact(self, secret: str) -> None:
        """Mask `secret` (a sudo password, a join token) in every line written from now on."""
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def __call__(self, line: str) -> None:
        with self._lock:
            for s in self._secrets:
                line = line.replace(s, "********")
            now = time.time()
            self._f.write(f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now * 1000) % 1000:03d} {line}\n")

    def close(self) -> None:
        self._f.close()


@dataclass
class StepResult:
    host: str
    step: str
    status: str
    msg: str = ""
    diff: str = ""


@dataclass
class Ctx:
    """What a step sees of its host: the connection, merged variables, facts, run flags."""

    host: Host
    conn: HostConn
    vars: dict[str, Any]
    check: bool = False
    diff: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    notified: list[str] = field(default_factory=list)
    started: set[str] = field(default_factory=set)  # services started fresh in this run
    probes: list[str] = field(default_factory=list)  # looks run with the facts (HostConn.probe)

    def notify(self, handler: str) -> None:
        if handler not in self.notified:
            self.notified.append(handler)


class Recap:
    def __init__(self):
        self.counts: dict[str, Counter] = {}
        self.results: list[StepResult] = []
        self.order: dict[str, int] = {}  # inventory order, for the recap
        self._lock = threading.Lock()

    def add(self, r: StepResult) -> None:
        with self._lock:
            self.counts.setdefault(r.host, Counter())[r.status] += 1
            self.results.append(r)

    def total(self, status: str) -> int:
        return sum(c[status] for c in self.counts.values())

    def bad_hosts(self, status: str) -> list[str]:
        return [h for h, c in self.counts.items() if c[status]]

    def render(self, console: Console) -> None:
        console.print("\n[bold]PLAY RECAP[/bold]")
        for h, c in sorted(self.counts.items(), key=lambda kv: self.order.get(kv[0], 1 << 30)):
            colour = "red" if c["failed"] or c["unreachable"] else "yellow" if c["changed"] else "green"
            console.print(f"[{colour}]{h:<12}[/{colour}] : ok={c['ok']:<3} changed={c['changed']:<3} "
                          f"unreachable={c['unreachable']:<3} failed={c['failed']:<3} skipped={c['skipped']}")


class Runner:
    """Holds the flags, log, console and recap of one operator command."""

    def __init__(self, name: str, check: bool = False, diff: bool = False, forks: int = 10,
                 console: Console | None = None, log: RunLog | None = None):
        self.check, self.diff, self.forks = check, diff, forks
        self._console = console
        self.log = log or RunLog(name)
        self.recap = Recap()
        self.conns: dict[str, HostConn] = {}

    @property
    def console(self) -> Console:
        """Where steps and recaps are drawn (rich, made at first use)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False)
        return self._console

    def conn(self, host: Host) -> HostConn:
        if host.name not in self.conns:
            self.conns[host.name] = HostConn(host, log=self.log)
        return self.conns[host.name]

    def record(self, r: StepResult) -> StepResult:
        from rich.markup import escape

        self.recap.add(r)
        self.log(f"[{r.host}] {r.status.upper()}: {r.step}" + (f" -- {r.msg}" if r.msg else ""))
        if r.status in ("changed", "failed", "unreachable"):
            colour = {"changed": "yellow", "failed": "red", "unreachable": "red"}[r.status]
            tail = f" ({r.msg})" if r.msg and r.status != "changed" else f" {r.msg}" if r.msg else ""
            what = "would change" if r.status == "changed" and self.check else r.status
            self.console.print(f"[{colour}]{what}[/{colour}]: " + escape(f"[{r.host}] {r.step}{tail}"))
        if r.diff and self.diff:
            self.console.print(r.diff, markup=False, highlight=False)
        return r

    def play(self, hosts: list[Host], steps_for, title: str, on_done=None) -> dict[str, str]:
        """Run `steps_for(host)` -> (ctx, [(name, callable(ctx) -> (status, msg, diff))],
        handlers) on every host in parallel. Returns host -> final state
        ('ok' | 'failed' | 'unreachable'). `on_done(host, state)`, if given, is called on the
        host's thread as soon as that host is done (others may still be running); it must
        return quickly and not raise."""
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        for i, h in enumerate(hosts):
            self.recap.order.setdefault(h.name, i)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=self.console, transient=True) as prog:
            overall = prog.add_task(title, total=len(hosts))

            def one(h: Host) -> str:
                state = "failed"  # what the caller is told if the play raises (an internal error)
                try:
                    state = self._host_play(h, steps_for, prog)
                finally:
                    prog.advance(overall)
                    if on_done is not None:
                        on_done(h, state)
                return state

            states = fan_out(hosts, one, self.forks)
        out = {}
        for h, s in zip(hosts, states, strict=True):
            if isinstance(s, Exception):
                self.record(StepResult(h.name, "internal error", "failed", repr(s)))
                s = "failed"
            out[h.name] = s
        return out

    def _host_play(self, h: Host, steps_for, prog: Progress) -> str:
        ctx, steps, handlers = steps_for(h, self.conn(h))
        ctx.check, ctx.diff = self.check, self.diff
        t = prog.add_task(f"  {h.name}", total=len(steps))
        try:
            for name, fn in steps:
                prog.update(t, description=f"  {h.name}: {name}")
                r = self._step(ctx, name, fn)
                prog.advance(t)
                if r.status in ("failed", "unreachable"):
                    return r.status
            for name, fn in handlers:
                if name in ctx.notified:
                    r = self._step(ctx, f"handler: {name}", fn)
                    if r.status in ("failed", "unreachable"):
                        return r.status
            return "ok"
        finally:
            prog.remove_task(t)

    def _step(self, ctx: Ctx, name: str, fn) -> StepResult:
        try:
            status, msg, diff = fn(ctx)
        except Unreachable as e:
            status, msg, diff = "unreachable", str(e), ""
        except (HostKeyError, BecomeError) as e:
            status, msg, diff = "failed", str(e), ""
        except Exception as e:  # a module's failure is that host's failure, with the reason
            status, msg, diff = "failed", f"{type(e).__name__}: {e}", ""
        return self.record(StepResult(ctx.host.name, name, status, msg, diff))

    def close(self) -> None:
        for c in self.conns.values():
            c.close()
        self.log.close()
