"""Failover: SIGKILL the leader, time until a write succeeds again. swarmkit-py vs PySyncObj.

    python bench/failover_bench.py --system swarmkit-py|pysyncobj --nodes 5 --trials 20 [--out F]

Prints ONE JSON line: system, nodes, trials, median_s, max_s, samples (seconds, one per trial).

Method, matching ../shared/notes/pysyncobj.md: a fresh cluster per trial (so no trial inherits a
warmed or degraded state from the last); a client on a surviving follower issues one write every
5 ms, each write independent of the others; once writes flow, the leader is SIGKILLed by the PID
of the process this script started; a sample is the time from the kill to the earliest
completion of a write *issued after* the kill. Writes issued before the kill do not count: they
may have been committed by the dead leader just before it died, which says nothing about
failover.

Where the two differ (said so in the README): PySyncObj's writer is a thread inside the follower
process (it has no client protocol); ours is this process calling `kv.put` on the follower over
an RPC connection, with a short per-write timeout (the follower forwards to the leader it knows,
and a write forwarded to a dead leader is lost, so it must time out rather than hang).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

from _common import PySyncObjCluster, emit, git_commit, source_id

PERIOD_S = 0.005
WRITE_TIMEOUT_S = 1.0
GIVE_UP_S = 20.0


async def _trial_ours(nodes: int, workdir: str) -> float:
    from swarmkit_py.raft.kv.cluster import LocalCluster
    from swarmkit_py.rpc import RpcClient, RpcError

    cluster = LocalCluster(nodes, workdir)
    writer: asyncio.Task | None = None
    client: RpcClient | None = None
    pending: set[asyncio.Task] = set()
    try:
        await cluster.start()
        leader = await cluster.wait_leader(timeout=30)
        follower = next(i for i in cluster.members if i != leader)
        host, port = cluster.members[follower].addr.rsplit(":", 1)
        client = RpcClient(host, int(port), timeout=WRITE_TIMEOUT_S + 0.5, connect_timeout=1.0)
        loop = asyncio.get_running_loop()
        oks: list[tuple[float, float]] = []  # (issued, completed)
        got = asyncio.Event()

        async def one(i: int) -> None:
            t0 = loop.time()
            try:
                await client.call("kv.put", {"k": f"f{i % 1000}", "v": b"x" * 10, "timeout": WRITE_TIMEOUT_S})
            except (RpcError, OSError):
                return
            oks.append((t0, loop.time()))
            got.set()

        async def write_every_period() -> None:
            i = 0
            nxt = loop.time()
            while True:
                t = asyncio.create_task(one(i))
                pending.add(t)
                t.add_done_callback(pending.discard)
                i += 1
                nxt += PERIOD_S
                await asyncio.sleep(max(0.0, nxt - loop.time()))

        writer = asyncio.create_task(write_every_period())
        await asyncio.wait_for(got.wait(), 10)  # writes flow through the follower
        t_kill = loop.time()  # loop.time() is time.monotonic()
        await cluster.kill(leader)
        deadline = t_kill + GIVE_UP_S
        while True:
            after = [done for issued, done in oks if issued >= t_kill]
            if after:
                return min(after) - t_kill
            if loop.time() > deadline:
                raise TimeoutError(f"no write succeeded within {GIVE_UP_S}s of killing the leader")
            got.clear()
            try:
                await asyncio.wait_for(got.wait(), 0.5)
            except TimeoutError:
                pass
    finally:
        if writer is not None:
            writer.cancel()
        for t in list(pending):
            t.cancel()
        await asyncio.gather(*([writer] if writer else []), *pending, return_exceptions=True)
        if client is not None:
            await client.close()
        await cluster.stop()


def _trial_pysyncobj(nodes: int, workdir: str) -> float:
    cluster = PySyncObjCluster(nodes, workdir)
    try:
        cluster.start()
        leader = cluster.wait_leader(timeout=30)
        follower = next(i for i in cluster.members if i != leader)
        f = cluster.members[follower]
        f.ask({"cmd": "writer"})
        r = f.ask({"cmd": "first_ok_after", "t": time.monotonic(), "timeout": 10}, timeout=15)
        if r["ok_t"] is None:
            raise TimeoutError("pysyncobj: writes through the follower never succeeded")
        t_kill = time.monotonic()
        cluster.kill(leader)
        r = f.ask({"cmd": "first_ok_after", "t": t_kill, "timeout": GIVE_UP_S}, timeout=GIVE_UP_S + 5)
        if r["ok_t"] is None:
            raise TimeoutError(f"pysyncobj: no write succeeded within {GIVE_UP_S}s of killing the leader")
        return r["ok_t"] - t_kill
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", choices=["swarmkit-py", "pysyncobj"], required=True)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--out", help="also append the JSON line to this file (e.g. bench/results.jsonl)")
    args = ap.parse_args(argv)
    args.out = os.path.abspath(args.out) if args.out else None  # before the chdir below

    load0 = os.getloadavg()[0]
    samples: list[float] = []
    failures = 0
    for _ in range(args.trials):
        with tempfile.TemporaryDirectory(prefix=f"failover-{args.system}-") as workdir:
            os.chdir(workdir)  # members use `python -m`: cwd first on sys.path (see raft_bench.py)
            try:
                if args.system == "swarmkit-py":
                    s = asyncio.run(_trial_ours(args.nodes, workdir))
                else:
                    s = _trial_pysyncobj(args.nodes, workdir)
            except TimeoutError as e:
                print(f"trial failed: {e}", file=sys.stderr)
                failures += 1
                continue
        samples.append(round(s, 4))
    result = {
        "bench": "failover",
        "system": args.system,
        "nodes": args.nodes,
        "trials": args.trials,
        "failed_trials": failures,
        "median_s": round(statistics.median(samples), 4) if samples else None,
        "max_s": max(samples) if samples else None,
        "samples": samples,
        "loadavg_1m_at_start": round(load0, 2),
        "commit": git_commit(),
        **(source_id() if args.system == "swarmkit-py" else {}),
    }
    emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
