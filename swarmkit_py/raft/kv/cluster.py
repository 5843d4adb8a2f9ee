"""Run a cluster of KV member processes on loopback: for tests, benchmarks and the demo.

Each member is its own OS process (so SIGKILL is a real crash: nothing in memory survives and
only what was fsynced comes back). Only processes started here are ever signalled, by PID.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...rpc import RpcClient, RpcError

POOL_LOW = 10000
"""Test ports are drawn from [POOL_LOW, the kernel's first ephemeral port)."""


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports free on `host` now, for processes that bind them later. Drawn below
    the kernel's ephemeral range: a port the kernel handed out for `bind(0)` is in that range,
    and any outgoing connection made meanwhile (by any process) may be given it before the
    process meant to listen on it binds (the whole suite once lost a worker agent's listen
    port so, "address already in use"). Random, so that concurrent test workers rarely pick
    the same; each is checked by binding it."""
    low, high = POOL_LOW, _ephemeral_low() - 1
    if high - low < 10 * n:  # no room below the range on this host: the kernel's choice
        low = high = 0
    rng = random.SystemRandom()
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            try:
                s.bind((host, rng.randint(low, high) if high else 0))
            except OSError:
                s.close()
                continue
            socks.append(s)  # held until all are drawn: none is drawn twice
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


@dataclass
class Member:
    id: int
    addr: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    client: RpcClient | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    def __init__(self, n: int, base_dir: str | Path, *, host: str = "127.0.0.1", tick_ms: int = 0, log_level: str = "WARNING",
                 encrypt: bool = False, profile_dir: str | Path | None = None):
        self.base = Path(base_dir)
        self.encrypt = encrypt
        self.profile_dir = Path(profile_dir) if profile_dir else None  # cProfile of every member
        self.host = host
        self.tick_ms = tick_ms
        self.log_level = log_level
        ports = free_ports(n, host)
        self.members: dict[int, Member] = {}
        for i, port in enumerate(ports, start=1):
            d = self.base / f"n{i}"
            self.members[i] = Member(i, f"{host}:{port}", d / "raft", d / "member.log")
        self.founders = dict(self._addrs())

    def _addrs(self):
        return ((m.id, m.addr) for m in self.members.values())

    def _spawn(self, m: Member, members: dict[int, str] | None, peers: dict[int, str] | None) -> None:
        m.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "swarmkit_py.raft.kv.server", "--id", str(m.id), "--listen", m.addr,
               "--data-dir", str(m.data_dir), "--log-level", self.log_level]
        if members:
            cmd += ["--members", ",".join(f"{k}={v}" for k, v in sorted(members.items()))]
        if peers:
            cmd += ["--peers", ",".join(f"{k}={v}" for k, v in sorted(peers.items()))]
        if self.tick_ms:
            cmd += ["--tick-ms", str(self.tick_ms)]
        if self.encrypt:
            cmd += ["--encrypt"]
        if self.profile_dir is not None:
            cmd += ["--profile", str(self.profile_dir / f"n{m.id}.pstats")]
        with open(m.log_path, "ab") as logf:
            m.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    async def start(self) -> None:
        """Spawn every member and wait until each answers; if one does not, stop them all
        (a caller whose start failed has nothing to stop, and the members would run on)."""
        try:
            for m in self.members.values():
                self._spawn(m, self.founders, None)
            for m in self.members.values():
                await self.wait_up(m.id)
        except BaseException:
            await self.stop()
            raise

    async def add(self, node_id: int, timeout: float = 30.0) -> Member:
        """Start a new, empty member and have the leader add it (learner, then voter)."""
        port = free_ports(1, self.host)[0]
        d = self.base / f"n{node_id}"
        m = Member(node_id, f"{self.host}:{port}", d / "raft", d / "member.log")
        self.members[node_id] = m
        self._spawn(m, None, {k: v.addr for k, v in self.members.items() if k != node_id})
        await self.wait_up(node_id)
        leader = await self.wait_leader()
        await self.call(leader, "kv.add_member", {"id": node_id, "addr": m.addr}, timeout=timeout)
        return m

    async def wait_up(self, node_id: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        m = self.members[node_id]
        while True:
            if not m.alive:
                raise RuntimeError(f"member {node_id} exited with {m.proc.returncode}; see {m.log_path}")
            try:
                await self.call(node_id, "kv.status", {}, timeout=1.0)
                return
            except (RpcError, OSError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"member {node_id} did not answer within {timeout}s; see {m.log_path}") from None
                await asyncio.sleep(0.05)

    def client(self, node_id: int) -> RpcClient:
        m = self.members[node_id]
        if m.client is None:
            host, port = m.addr.rsplit(":", 1)
            m.client = RpcClient(host, int(port), timeout=10.0, connect_timeout=1.0)
        return m.client

    async def call(self, node_id: int, method: str, params, timeout: float = 10.0):
        return await self.client(node_id).call(method, params, timeout=timeout)

    async def status(self, node_id: int) -> dict:
        return await self.call(node_id, "kv.status", {}, timeout=2.0)

    async def wait_leader(self, timeout: float = 10.0, exclude: set[int] = frozenset()) -> int:
        """The member that a majority of live members agree leads, waiting until there is one."""
        deadline = time.monotonic() + timeout
        while True:
            seen = {}
            for nid, m in self.members.items():
                if m.alive and nid not in exclude:
                    try:
                        st = await self.status(nid)
                    except (RpcError, OSError):
                        continue
                    if st["role"] == "leader":
                        seen[nid] = st["term"]
            if seen:
                return max(seen, key=seen.get)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no leader within {timeout}s")
            await asyncio.sleep(0.05)

    async def put(self, node_id: int, key: str, value: bytes, timeout: float = 5.0):
        return await self.call(node_id, "kv.put", {"k": key, "v": value, "timeout": timeout}, timeout=timeout + 1)

    async def put_many(self, node_id: int, puts: list[tuple[str, bytes]], timeout: float = 5.0):
        """Many independent writes in one request: ``(indexes, errors)``, see KVServer._h_put_many."""
        return await self.call(node_id, "kv.put_many", {"puts": [list(p) for p in puts], "timeout": timeout},
                               timeout=timeout + 1)

    async def get(self, node_id: int, key: str):
        return await self.call(node_id, "kv.get", {"k": key})

    async def _drop_client(self, m: Member) -> None:
        if m.client is not None:
            await m.client.close()
            m.client = None

    async def kill(self, node_id: int) -> None:
        """SIGKILL: a crash, nothing flushed."""
        m = self.members[node_id]
        if m.alive:
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait()
        await self._drop_client(m)

    async def restart(self, node_id: int) -> None:
        m = self.members[node_id]
        await self.kill(node_id)
        self._spawn(m, self.founders if node_id in self.founders else None, {k: v.addr for k, v in self.members.items() if k != node_id})
        await self.wait_up(node_id)

    async def stop(self) -> None:
        for m in self.members.values():
            await self._drop_client(m)
            if m.alive:
                m.proc.send_signal(signal.SIGTERM)
        for m in self.members.values():
            if m.proc is not None:
                try:
                    m.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait()
