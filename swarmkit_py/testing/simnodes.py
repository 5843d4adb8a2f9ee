"""Simulated worker nodes: the real join, session and task reports, with a fake executor.

Why: scale figures (issue 13) need hundreds to thousands of workers, and this machine can run
a handful of real agents at most. What a manager sees from a worker is only what comes over
the cluster port, so a simulated node runs exactly the worker's code for that part and fakes
only what is behind it (Docker):

- ``worker.join.join``: a join token, ``ca.root`` checked against the token's digest, a CSR
  for a key made here, a certificate signed by the swarm's CA, saved in a state directory;
- ``worker.session.WorkerSession`` over mutual TLS with that certificate (the manager checks
  it; the node checks the manager's): session, heartbeats at the period the dispatcher asks
  for, leader changes followed through the standby watch, the manager list learned;
- ``worker.reconcile.TaskWorker``: assignment sets applied by the real reconciler and runners,
  status reports batched by the real reporter. Only the executor is ``SimExecutor`` below,
  whose controllers go through the states a Docker controller reports (accepted, preparing,
  ready, starting, running; shutdown when stopped, complete when a task ends on its own)
  without any container.

All nodes of a ``SimFleet`` share one asyncio loop in one process (the caller's), so thousands
fit in a few hundred MB. They talk only to the manager addresses they are given (loopback).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..ca import client_context, expect_manager, load_node_credentials
from ..ca.files import ROOT_CA_CERT_FILE
from ..proto import (
    CA_RENEW_NOW,
    DEADLINE_EXCEEDED,
    NETMAP,
    NO_QUORUM,
    NOT_LEADER,
    UNAVAILABLE,
    AssignedTask,
)
from ..store.objects import ContainerStatus, TaskState, TaskStatus
from ..worker.executor.controller import MESSAGES
from ..worker.join import JoinRejectedError, ManagerUnreachableError, join
from ..worker.reconcile import TaskWorker
from ..worker.session import WorkerSession

log = logging.getLogger(__name__)

GIB = 1024**3
NANO = 10**9

RETRIED = frozenset({UNAVAILABLE, NO_QUORUM, NOT_LEADER, DEADLINE_EXCEEDED})
"""Join refusals that another try may not meet (no leader right now); any other is final."""

SIM_ENGINE_VERSION = "simulated"
"""The engine version a simulated node reports (``docker node inspect`` shows it)."""

COMPLETES_AT_ONCE = ("true",)
"""A task whose command (or args) is exactly this ends on its own with exit code 0, so the
COMPLETE path and the restart policy can be driven too; every other task runs until stopped."""


# -- the fake executor ------------------------------------------------------------------------


class SimController:
    """One task's "container": the state machine of ``executor.Controller`` without Docker."""

    def __init__(self, task: AssignedTask, seq: int, work: float = 0.0) -> None:
        self.task = task
        self._container_id = f"sim{seq:012x}"
        self._work = work
        self.state = TaskState.ACCEPTED
        self._exit_code: int | None = None
        self._pid = 0
        self._stopped = asyncio.Event()

    def status(self) -> TaskStatus:
        cs = None
        if self.state >= TaskState.READY:
            cs = ContainerStatus(container_id=self._container_id, pid=self._pid or None,
                                 exit_code=self._exit_code)
        return TaskStatus(state=self.state, message=MESSAGES.get(self.state, str(self.state)),
                          container_status=cs)

    def _set(self, state: TaskState) -> None:
        if state > self.state and not self.state.terminal:
            self.state = state

    async def prepare(self) -> TaskStatus:
        if self._work:
            await asyncio.sleep(self._work)
        self._set(TaskState.READY)
        return self.status()

    async def start(self) -> TaskStatus:
        if self._work:
            await asyncio.sleep(self._work)
        self._pid = 1000 + int(self._container_id[3:], 16) % 30000
        self._set(TaskState.RUNNING)
        return self.status()

    async def wait(self) -> TaskStatus:
        spec = self.task.spec.container_spec
        command = tuple((spec.command or []) + (spec.args or [])) if spec is not None else ()
        if command != COMPLETES_AT_ONCE:
            await self._stopped.wait()
        if not self.state.terminal:
            self._exit_code = 0
            self._set(TaskState.COMPLETE)
        return self.status()

    async def shutdown(self, grace: int | None = None) -> TaskStatus:
        if not self.state.terminal:
            if self.state >= TaskState.RUNNING:
                self._exit_code = 143  # SIGTERM, as a stopped container reports
            self.state = TaskState.SHUTDOWN
        self._stopped.set()
        return self.status()


class SimExecutor:
    """``worker.executor.Executor`` for one simulated node: no engine, nothing to adopt (a
    simulated node's "containers" die with its process, as a host's do on reboot without
    live-restore)."""

    def __init__(self, work: float = 0.0) -> None:
        self.work = work
        self.controllers: dict[str, SimController] = {}
        self._seq = 0

    async def controller(self, task: AssignedTask) -> SimController:
        self._seq += 1
        ctl = SimController(task, self._seq, self.work)
        self.controllers[task.id] = ctl
        return ctl

    async def containers(self, node_id: str) -> dict[str, Any]:
        return {}

    def adopt(self, task: AssignedTask, container: Any) -> SimController:
        raise AssertionError("a simulated node has no containers to adopt")

    async def remove(self, container: Any) -> None:
        return None

    def running(self) -> int:
        return sum(1 for c in self.controllers.values() if c.state == TaskState.RUNNING)


# -- one node ---------------------------------------------------------------------------------


@dataclass
class SimNode:
    name: str
    state_dir: Path
    cpus: int = 4
    memory_gib: int = 8
    node_id: str | None = None
    cluster_id: str | None = None
    managers: list[str] = field(default_factory=list)
    session: WorkerSession | None = None
    worker: TaskWorker | None = None
    executor: SimExecutor = field(default_factory=SimExecutor)

    def description(self) -> dict[str, Any]:
        return {
            "hostname": self.name,
            "platform": {"architecture": "x86_64", "os": "linux"},
            "resources": {"nano_cpus": self.cpus * NANO, "memory_bytes": self.memory_gib * GIB},
            "engine": {"engine_version": SIM_ENGINE_VERSION, "labels": {"sim": "1"}},
        }

    async def join(self, manager_addr: str, token: str, timeout: float = 60.0,
                   attempts: int = 5) -> None:
        """``worker.join.join``, re-run (as an operator's script would) when the manager was
        unreachable or refused for want of a leader, e.g. during an election."""
        for attempt in range(attempts):
            try:
                result = await join(manager_addr, token, self.state_dir, self.name, "127.0.0.1",
                                    timeout=timeout)
                break
            except (ManagerUnreachableError, JoinRejectedError) as e:
                if attempt == attempts - 1 or getattr(e, "code", UNAVAILABLE) not in RETRIED:
                    raise
                log.info("join of %s failed (%s); retrying", self.name, e)
                await asyncio.sleep(0.5 * 2**attempt)
        self.node_id, self.cluster_id = result.node_id, result.cluster_id
        self.managers = [m.addr for m in result.managers] or [manager_addr]

    def start(self, **session_options: Any) -> None:
        """Open the dispatcher session (mutual TLS with the joined certificate) and start
        applying assignments."""
        assert self.node_id is not None, "join first"
        cert, key = load_node_credentials(self.state_dir)
        ca = (self.state_dir / ROOT_CA_CERT_FILE).read_bytes()

        async def describe() -> dict[str, Any]:
            return self.description()

        self.session = WorkerSession(
            self.node_id, list(self.managers),
            ssl_context=client_context(ca, cert, key),
            verify_peer=expect_manager(self.cluster_id),
            describe=describe, addr="127.0.0.1", **session_options,
        )
        # Pushes a real agent acts on but a simulated one has no use for: the network map
        # (no kernel data plane here) and renewal requests (no promotion of simulated nodes).
        self.session.on_push(NETMAP, lambda params: None)
        self.session.on_push(CA_RENEW_NOW, lambda params: None)
        self.worker = TaskWorker(self.session, self.executor)
        self.session.start()
        self.worker.start()

    @property
    def connected(self) -> bool:
        return self.session is not None and self.session.connected.is_set()

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        if self.session is not None:
            await self.session.stop()
        self.worker = self.session = None


# -- the fleet --------------------------------------------------------------------------------


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted`` (each node holds one or two
    connections); returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted)) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class SimFleet:
    """``count`` simulated nodes named ``{prefix}{i}``, joined and started by the harness.

    State directories go under ``base`` (default: a fresh directory in /dev/shm when there is
    one: the nodes' "disks" are not what a scale run measures, and thousands of fsyncs on a
    shared machine's disk would be).
    """

    def __init__(self, count: int, *, prefix: str = "sim", base: str | os.PathLike[str] | None = None,
                 join_concurrency: int = 16, work: float = 0.0) -> None:
        if count < 0:
            raise ValueError("count must be >= 0")
        if base is None:
            parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
            base = tempfile.mkdtemp(prefix="swarmkit-sim-", dir=parent)
            self._own_base = True
        else:
            self._own_base = False
        self.base = Path(base)
        self.join_concurrency = join_concurrency
        self.nodes = [SimNode(f"{prefix}{i}", self.base / f"{prefix}{i}",
                              executor=SimExecutor(work)) for i in range(count)]
        raise_fd_limit(4 * count + 256)

    async def join_all(self, manager_addr: str, token: str) -> None:
        """Join every node (``join_concurrency`` at a time); raises the first failure."""
        sem = asyncio.Semaphore(self.join_concurrency)

        async def one(node: SimNode) -> None:
            async with sem:
                await node.join(manager_addr, token)

        await asyncio.gather(*(one(n) for n in self.nodes))

    def start_all(self, **session_options: Any) -> None:
        for n in self.nodes:
            n.start(**session_options)

    async def up(self, manager_addr: str, token: str, **session_options: Any) -> None:
        await self.join_all(manager_addr, token)
        self.start_all(**session_options)

    def connected(self) -> int:
        return sum(1 for n in self.nodes if n.connected)

    async def wait_connected(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while self.connected() < len(self.nodes):
                await asyncio.sleep(0.05)

    def running(self) -> int:
        """Tasks the fleet's executors hold in RUNNING."""
        return sum(n.executor.running() for n in self.nodes)

    def stats(self) -> dict[str, int]:
        out = {"sessions_opened": 0, "heartbeats": 0, "failed_rounds": 0, "moved_by_push": 0,
               "sessions_via_standby": 0, "slow_heartbeats": 0}
        for n in self.nodes:
            if n.session is not None:
                for k in out:
                    out[k] += n.session.stats.get(k, 0)
        return out

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    async def __aenter__(self) -> SimFleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


__all__ = ["SimController", "SimExecutor", "SimFleet", "SimNode", "raise_fd_limit"]


# -- the harness's process --------------------------------------------------------------------


async def _serve(args: Any) -> None:
    import json
    import signal
    import sys
    import time

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # a thousand nodes' objects in one heap: the agent's collector settings (agent/gcpolicy.py)
    # keep full collections from stalling every node at once, as they stalled the managers
    from ..agent.gcpolicy import GCPolicy

    GCPolicy().start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fleet = SimFleet(args.count, prefix=args.prefix, base=args.base,
                     join_concurrency=args.join_concurrency, work=args.work)
    started = time.monotonic()
    joined = 0

    def line(event: str, **extra: Any) -> None:
        st = fleet.stats()
        print(json.dumps({"event": event, "t": round(time.time(), 3),
                          "elapsed": round(time.monotonic() - started, 3), "nodes": args.count,
                          "joined": joined, "connected": fleet.connected(),
                          "running": fleet.running(), **st, **extra}), flush=True)

    sem = asyncio.Semaphore(args.join_concurrency)

    async def join_start(node: SimNode) -> None:
        nonlocal joined
        async with sem:
            await node.join(args.manager, args.token)
        joined += 1
        node.start()

    async def report() -> None:
        # how late this process's own loop wakes up (the fleet's stall): when the fleet is
        # late, its nodes' heartbeats are too, and a Down is the harness's doing, not a finding
        lag_max = 0.0
        while True:
            t0 = loop.time()
            await asyncio.sleep(args.status_interval)
            lag = loop.time() - t0 - args.status_interval
            lag_max = max(lag_max, lag)
            line("status", loop_lag_s=round(lag, 3), loop_lag_max_s=round(lag_max, 3))

    reporter = asyncio.create_task(report())
    try:
        joining = asyncio.gather(*(join_start(n) for n in fleet.nodes))
        done, _ = await asyncio.wait({joining, asyncio.ensure_future(stop.wait())},
                                     return_when=asyncio.FIRST_COMPLETED)
        if joining in done:
            joining.result()  # a failed join ends the run with its error
            line("joined")
        await stop.wait()
    except Exception as e:  # noqa: BLE001 - reported to the harness, then exit non-zero
        line("error", error=repr(e))
        raise SystemExit(1) from e
    finally:
        reporter.cancel()
        line("stopping")
        await fleet.stop()
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    """``python -m swarmkit_py.testing.simnodes --manager 127.0.0.1:PORT --token T --count N``:
    join and run N simulated nodes until SIGTERM, printing a JSON status line every
    ``--status-interval`` seconds (joined, connected, running tasks, heartbeats sent)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m swarmkit_py.testing.simnodes",
                                description=main.__doc__)
    p.add_argument("--manager", required=True, help="a manager's cluster address, host:port")
    p.add_argument("--token", required=True, help="the swarm's worker join token")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", default="sim")
    p.add_argument("--base", default=None, help="state directories (default: /dev/shm temp)")
    p.add_argument("--join-concurrency", type=int, default=16)
    p.add_argument("--work", type=float, default=0.0,
                   help="seconds each prepare and start step takes (default 0)")
    p.add_argument("--status-interval", type=float, default=1.0)
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    if args.count < 1:
        p.error("--count must be at least 1")
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
