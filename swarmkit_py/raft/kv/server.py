"""One replicated KV member as an OS process: `python -m swarmkit_py.raft.kv.server`.

Raft traffic and client calls share one RPC port, as a manager's port 2377 does. Besides
put/get it serves `bench.load`, which runs a load generator inside this process: that is how
PySyncObj is benchmarked (it has no client protocol), so both can be compared the same way.

`kv.put_many` carries many independent writes in one request (a client that pipelines): each
is its own Raft entry with its own outcome, not a transaction. It is what makes a client
connection cheap per write: one frame to decode and one to encode, one future and one
completion per batch on the leader, instead of a frame, two futures and their callbacks per
write.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import resource
import signal
import time

import msgpack

from ...rpc import RpcError, RpcServer
from ..config import RaftConfig
from ..errors import NoQuorum, NotLeader, RaftError
from ..node import RaftNode
from ..storage import DiskStorage
from ..transport import Transport, parse_address
from ..types import RaftRole
from .fsm import KVStateMachine, encode_put

_PACKER = msgpack.Packer(use_bin_type=True)  # encode_put's layout, one Packer reused (event loop only)


def _settle(answer: asyncio.Future, fut: asyncio.Future) -> None:
    if answer.done():
        return
    if fut.cancelled():
        answer.cancel()
    elif (e := fut.exception()) is None:
        answer.set_result(fut.result())
    else:
        answer.set_exception(_raft_error(e) if isinstance(e, RaftError) else e)


def _settle_many(answer: asyncio.Future, fut: asyncio.Future) -> None:
    if answer.done():
        return
    if fut.cancelled():
        answer.cancel()
        return
    if (e := fut.exception()) is not None:  # the whole batch (a stopped member, no leader)
        answer.set_exception(_raft_error(e) if isinstance(e, RaftError) else e)
        return
    results = fut.result()
    errors = []
    # the KV state machine answers an int (the index): anything else is a failed write's error
    for i in [i for i, r in enumerate(results) if type(r) is not int]:
        r = results[i]
        if isinstance(r, BaseException):
            results[i] = None
            err = _raft_error(r) if isinstance(r, RaftError) else RpcError("internal", f"{type(r).__name__}: {r}")
            errors.append((i, err.code, err.message))
    answer.set_result((results, errors))


def _raft_error(e: RaftError) -> RpcError:
    if isinstance(e, NotLeader):
        return RpcError("not_leader", f"{e} ({e.leader_hint})")
    if isinstance(e, NoQuorum):
        return RpcError("no_quorum", str(e))
    return RpcError("unavailable", str(e))


class KVServer:
    def __init__(self, node_id: int, listen: str, data_dir: str, config: RaftConfig, encrypt: bool = False):
        host, port = parse_address(listen)
        self.rpc = RpcServer(host, port)
        self.fsm = KVStateMachine()
        self.node = RaftNode(
            node_id,
            data_dir,
            self.fsm,
            lambda on_msg, **reports: Transport(node_id, host, port, on_msg, rpc_server=self.rpc, **reports),
            config,
            addr=listen,
            storage=DiskStorage(data_dir, encrypted=True) if encrypt else None,
        )
        for name in ("get", "status", "add_member", "remove_member", "transfer", "bench_load"):
            self.rpc.add_handler(f"kv.{name}", getattr(self, f"_h_{name}"))
        self.rpc.add_handler("kv.put", self._h_put, inline=True)
        self.rpc.add_handler("kv.put_many", self._h_put_many, inline=True)

    async def start(self, members: dict[int, str] | None, peers: dict[int, str] | None) -> None:
        await self.rpc.start()
        await self.node.start(bootstrap_members=members, peers=peers)

    async def stop(self) -> None:
        await self.node.stop()
        await self.rpc.stop()

    def _h_put(self, peer, p) -> asyncio.Future:
        """Inline (no task per write): the proposal's future, its Raft errors turned into RPC
        errors the client can act on."""
        fut = self.node.propose_nowait(encode_put(p["k"], p["v"]), timeout=p.get("timeout"))
        answer = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: _settle(answer, f))
        return answer

    def _h_put_many(self, peer, p) -> asyncio.Future:
        """``{"puts": [[key, value], ...], "timeout": s}`` -> ``[indexes, errors]``: the index
        each write was applied at (None where it failed) and ``[[i, code, message], ...]`` for
        the writes that failed (``not_leader``, ``no_quorum``, ``unavailable``)."""
        puts = p.get("puts") if isinstance(p, dict) else None
        if not isinstance(puts, list):
            raise RpcError("bad_request", 'kv.put_many takes {"puts": [[key, value], ...]}')
        pack = _PACKER.pack
        try:
            cmds = [pack((k, v)) for k, v in puts if type(k) is str and type(v) is bytes]
        except (TypeError, ValueError):
            cmds = []  # an item that is not a pair: reported below
        if len(cmds) != len(puts):
            raise RpcError("bad_request", "kv.put_many: every item must be [key (str), value (bytes)]")
        fut = self.node.propose_many_nowait(cmds, timeout=p.get("timeout"))
        answer = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: _settle_many(answer, f))
        return answer

    async def _h_get(self, peer, p):
        try:
            if p.get("linearizable", True):
                await self.node.read_index()
        except RaftError as e:
            raise _raft_error(e) from None
        return self.fsm.data.get(p["k"])

    async def _h_status(self, peer, p):
        c = self.node.core
        if c is None:
            raise RpcError("unavailable", "starting")
        return {
            "id": self.node.id,
            "pid": os.getpid(),
            "role": RaftRole(c.role).name.lower(),
            "leader": c.leader,
            "term": c.term,
            "commit": c.commit,
            "applied": c.applied,
            "keys": len(self.fsm.data),
            "members": [
                {"id": m.node_id, "addr": m.addr, "voter": m.voter, "reachable": m.reachable}
                for m in self.node.members()
            ],
            "metrics": self.node.metrics,
            "cpu_s": _cpu_seconds(),
            "last_index": c.log.last_index(),
            "progress": {str(nid): [pr.match, pr.next, pr.state.name, len(pr.inflight), pr.paused] for nid, pr in c.prs.items()},
            "transport": {str(k): v for k, v in self.node.transport.stats()["peers"].items()},
        }

    async def _h_add_member(self, peer, p):
        try:
            await self.node.add_member(p["id"], p["addr"])
        except RaftError as e:
            raise _raft_error(e) from None
        return True

    async def _h_remove_member(self, peer, p):
        try:
            await self.node.remove_member(p["id"])
        except RaftError as e:
            raise _raft_error(e) from None
        return True

    async def _h_transfer(self, peer, p):
        try:
            return await self.node.transfer_leadership(p.get("to", 0))
        except RaftError as e:
            raise _raft_error(e) from None

    async def _h_bench_load(self, peer, p):
        """W writes in flight for `seconds` after `warmup`: count and latency percentiles."""
        inflight, seconds, warmup, size = p["inflight"], p["seconds"], p.get("warmup", 1.0), p["size"]
        rnd = random.Random(1)
        values = [rnd.randbytes(size) for _ in range(64)]
        loop = asyncio.get_running_loop()
        t_start = loop.time()
        t_measure, t_end = t_start + warmup, t_start + warmup + seconds
        done = 0
        errors = 0
        lat: list[float] = []

        async def worker(w: int) -> None:
            nonlocal done, errors
            i = w
            while True:
                s = loop.time()
                if s >= t_end:
                    return
                t0 = time.perf_counter()
                try:
                    await self.node.propose(encode_put(f"k{i % 1000}", values[i % 64]))
                except RaftError:
                    errors += 1
                    await asyncio.sleep(0.01)
                    continue
                t1 = time.perf_counter()
                if s >= t_measure and loop.time() <= t_end:
                    done += 1
                    if len(lat) < 200_000:
                        lat.append((t1 - t0) * 1000)
                i += inflight

        await asyncio.gather(*(worker(w) for w in range(inflight)))
        lat.sort()
        pick = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: None)
        return {"writes": done, "seconds": seconds, "errors": errors, "p50_ms": pick(0.5), "p99_ms": pick(0.99)}


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _parse_members(s: str | None) -> dict[int, str] | None:
    if not s:
        return None
    out = {}
    for part in s.split(","):
        nid, addr = part.split("=", 1)
        out[int(nid)] = addr
    return out


async def _amain(args) -> None:
    cfg = RaftConfig(**({"tick_ms": args.tick_ms} if args.tick_ms else {}))
    srv = KVServer(args.id, args.listen, args.data_dir, cfg, encrypt=args.encrypt)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile(time.thread_time)  # CPU of the event loop, not the wall clock
        prof.enable()
    await srv.start(_parse_members(args.members), _parse_members(args.peers))
    print(f"ready {args.id} {args.listen}", flush=True)
    await stop.wait()
    await srv.stop()
    if prof is not None:
        prof.disable()
        prof.dump_stats(args.profile)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--id", type=int, required=True)
    ap.add_argument("--listen", required=True, help="host:port for Raft and clients")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--members", help="found a new cluster: id=host:port,... (same on every founder)")
    ap.add_argument("--peers", help="address hints when joining: id=host:port,...")
    ap.add_argument("--tick-ms", type=int, default=0)
    ap.add_argument("--log-level", default="WARNING")
    ap.add_argument("--encrypt", action="store_true", help="encrypt the WAL and snapshots at rest")
    ap.add_argument("--profile", help="run under cProfile and write its stats here on a clean stop")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s n{args.id} %(levelname)s %(name)s: %(message)s")
    asyncio.run(_amain(args))


if __name__ == "__main__":
    main()
