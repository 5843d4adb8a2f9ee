"""Committed writes per second and commit latency: swarmkit-py's Raft vs PySyncObj, same machine.

    python bench/raft_bench.py --system swarmkit-py|pysyncobj --nodes 3|5 --seconds 10 \
        --value-size 10|1024 [--inflight N] [--client inprocess|connection [--batch B]] [--journal] [--out F]

Prints ONE JSON line: system, nodes, value_size, inflight, client, writes_per_s, p50_ms, p99_ms,
errors, plus what happened to leadership during the run (an election under load is a finding).

Why it is run this way (see ../shared/notes/pysyncobj.md, the figures we compare with):
- Each member is its own OS process on 127.0.0.1, on a fresh cluster in a temp dir.
- PySyncObj has no client protocol, so its load is a thread inside the leader's process keeping W
  `ReplDict.set` calls in flight with callbacks (bench/_pysyncobj_node.py). `--client inprocess`
  runs ours the same way (`kv.bench_load` runs the load inside our leader's process), which is
  the like-for-like comparison; `--client connection` drives ours through real RPC connections
  from this process (`kv.put`, W concurrent calls), which is what a user sees. Both are reported.
  `--batch B` makes that client pipeline: W/B concurrent `kv.put_many` requests of B independent
  writes each (each its own Raft entry and outcome; a write's latency is its request's).
- 1,000 keys round robin, random (incompressible) values, 1 s warm-up, counted over --seconds.
- Ours fsyncs every acknowledged write (WAL, group commit); PySyncObj never fsyncs, and by
  default keeps its log in memory (`--journal` gives it journal + dump files on disk).
- `--inflight 1` gives the commit latency figure.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import sys
import tempfile

from _common import PySyncObjCluster, emit, git_commit, source_id


def _own_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _pct(sorted_ms: list[float], q: float) -> float | None:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))] if sorted_ms else None


async def _connection_load(cluster, leader: int, inflight: int, seconds: float, size: int,
                           warmup: float, conns: int, batch: int = 1) -> dict:
    """W writes in flight over `conns` RPC connections to the leader. With `batch` 1, W
    concurrent `kv.put` calls (a request per write); with `batch` B, W / B concurrent
    `kv.put_many` requests of B independent writes each (a client that pipelines: each write
    is its own Raft entry with its own outcome and counts as one write, its latency that of
    its request). Counted like PySyncObj's: writes completed inside the window after the
    warm-up."""
    from swarmkit_py.rpc import RpcClient, RpcError

    host, port = cluster.members[leader].addr.rsplit(":", 1)
    clients = [RpcClient(host, int(port), timeout=30.0, connect_timeout=2.0) for _ in range(conns)]
    rnd = random.Random(1)
    values = [rnd.randbytes(size) for _ in range(4099)]
    nvalues = len(values)
    loop = asyncio.get_running_loop()
    t_measure = loop.time() + warmup
    t_end = t_measure + seconds
    lat: list[float] = []
    done = errors = 0
    keys = itertools.count()
    key_names = [f"k{i}" for i in range(1000)]

    conns = [await cl.connect() for cl in clients]
    nconns = len(conns)

    async def worker(w: int) -> None:
        nonlocal done, errors
        while True:
            t0 = loop.time()
            if t0 >= t_end:
                return
            i = next(keys)
            try:
                # pipelined, as a client library would: no timer or socket wait per call
                conn = conns[w % nconns]
                params = {"k": key_names[i % 1000], "v": values[i % nvalues]}
                if hasattr(conn, "call_nowait"):
                    await conn.call_nowait("kv.put", params)
                else:  # an older tree's client: one timer and one drain per call
                    await conn.call("kv.put", params, timeout=30.0)
            except (RpcError, OSError):
                errors += 1
                await asyncio.sleep(0.01)
                continue
            t1 = loop.time()
            if t_measure <= t1 <= t_end:
                done += 1
                if len(lat) < 200_000:
                    lat.append((t1 - t0) * 1000)

    async def batch_worker(w: int) -> None:
        nonlocal done, errors
        conn = conns[w % nconns]
        n = 0
        while True:
            t0 = loop.time()
            if t0 >= t_end:
                return
            base = (w * 7919 + n * batch) % 1000  # 1,000 keys round robin, like the others
            n += 1
            puts = [[key_names[(base + j) % 1000], values[(base + j) % nvalues]] for j in range(batch)]
            try:
                _, failed = await conn.call_nowait("kv.put_many", {"puts": puts})
            except (RpcError, OSError):
                errors += batch
                await asyncio.sleep(0.01)
                continue
            t1 = loop.time()
            errors += len(failed)
            if t_measure <= t1 <= t_end:
                ok = batch - len(failed)
                done += ok
                if len(lat) < 200_000:
                    lat.extend([(t1 - t0) * 1000] * ok)

    try:
        if batch > 1:
            await asyncio.gather(*(batch_worker(w) for w in range(max(1, inflight // batch))))
        else:
            await asyncio.gather(*(worker(w) for w in range(inflight)))
    finally:
        for cl in clients:
            await cl.close()
    lat.sort()
    return {"writes": done, "seconds": seconds, "errors": errors, "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99)}


def _members_cpu_s(cluster) -> float:
    """User + system CPU seconds used so far by the member processes (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for m in cluster.members.values():
        if m.proc is not None:
            with open(f"/proc/{m.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _start_spies(cluster, args) -> list:
    """py-spy (raw collapsed stacks, every thread: the WAL's too) on every member and on this
    client process, over the warm-up and the counted window: nN.txt and client.txt in
    --pyspy DIR, for bench/pyspy_top.py. Sampling from outside, so unlike cProfile it does
    not charge a cost per Python call (which would exaggerate a path that makes many)."""
    import shutil
    import subprocess

    pyspy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or "py-spy"
    targets = {f"n{n}": m.proc.pid for n, m in cluster.members.items()}
    if args.client == "connection":
        targets["client"] = os.getpid()
    return [subprocess.Popen([pyspy, "record", "-f", "raw", "-r", "100", "-d", str(int(args.warmup + args.seconds)),
                              "-o", os.path.join(args.pyspy, f"{name}.txt"), "-p", str(pid), "--nonblocking"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in targets.items()]


async def _run_ours(args, workdir: str) -> dict:
    from swarmkit_py.raft.kv.cluster import LocalCluster

    cluster = LocalCluster(args.nodes, workdir, encrypt=args.encrypt,
                           **({"profile_dir": args.profile} if args.profile else {}))  # older trees lack it
    try:
        await cluster.start()
        leader = await cluster.wait_leader(timeout=30)
        before = await cluster.status(leader)
        cpu0 = _members_cpu_s(cluster)
        each0 = {n: (await cluster.status(n)).get("cpu_s") for n in cluster.members}
        me0 = _own_cpu()
        spies = _start_spies(cluster, args) if args.pyspy else []
        if args.client == "inprocess":
            r = await cluster.call(leader, "kv.bench_load",
                                   {"inflight": args.inflight, "seconds": args.seconds, "size": args.value_size,
                                    "warmup": args.warmup},
                                   timeout=args.seconds + args.warmup + 60)
        else:
            r = await _connection_load(cluster, leader, args.inflight, args.seconds, args.value_size,
                                       args.warmup, args.connections, args.batch)
        for spy in spies:
            spy.wait(60)
        cpu = _members_cpu_s(cluster) - cpu0
        me1 = _own_cpu()
        after = await cluster.status(leader)
        each1 = {n: (await cluster.status(n)).get("cpu_s") for n in cluster.members}
        m0, m1 = before.get("metrics", {}), after.get("metrics", {})
        extra = {
            "leader_id": leader,
            "leader_kept": after["role"] == "leader" and after["term"] == before["term"],
            "term_changes": after["term"] - before["term"],
            "fsyncs_per_write": None,
            # CPU of every member process per write (warm-up included, like the writes it did):
            # far less disturbed by other load on a shared machine than writes/s
            "cpu_us_per_write": round(1e6 * cpu / r["writes"], 1) if r.get("writes") else None,
        }
        props = m1.get("proposals", 0) - m0.get("proposals", 0)
        if props and "fsyncs" in m1:
            extra["fsyncs_per_write"] = round((m1["fsyncs"] - m0.get("fsyncs", 0)) / props, 4)
        if props and None not in each0.values():  # (a member of an older tree has no cpu_s)
            # the same split by role (leader, a follower on average) and this client process
            per = lambda sec: round(sec * 1e6 / props, 2)  # noqa: E731
            extra["leader_cpu_us_per_write"] = per(each1[leader] - each0[leader])
            extra["follower_cpu_us_per_write"] = per(
                sum(each1[n] - each0[n] for n in cluster.members if n != leader) / max(1, len(cluster.members) - 1))
            if args.client == "connection":
                extra["client_cpu_us_per_write"] = per(me1 - me0)
        return {**r, **extra}
    finally:
        await cluster.stop()


def _run_pysyncobj(args, workdir: str) -> dict:
    cluster = PySyncObjCluster(args.nodes, workdir, journal=args.journal, no_batch=args.no_batch)
    try:
        cluster.start()
        leader = cluster.wait_leader(timeout=30)
        before = cluster.status(leader)
        r = cluster.members[leader].ask(
            {"cmd": "load", "inflight": args.inflight, "seconds": args.seconds, "size": args.value_size,
             "warmup": args.warmup},
            timeout=args.seconds + args.warmup + 60)
        after = cluster.status(leader)
        return {**r, "leader_kept": after["is_leader"] and after["term"] == before["term"],
                "term_changes": after["term"] - before["term"]}
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", choices=["swarmkit-py", "pysyncobj"], required=True)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--value-size", type=int, default=10)
    ap.add_argument("--inflight", type=int, default=10_000, help="writes in flight (W); 1 = commit latency")
    ap.add_argument("--client", choices=["inprocess", "connection"], default="inprocess",
                    help="swarmkit-py only: load inside the leader (like PySyncObj) or over RPC connections")
    ap.add_argument("--connections", type=int, default=4, help="RPC connections for --client connection")
    ap.add_argument("--batch", type=int, default=1,
                    help="--client connection: writes per request (1 = one kv.put each; B > 1 = "
                    "W/B kv.put_many requests of B independent writes)")
    ap.add_argument("--journal", action="store_true", help="pysyncobj only: journal + dump files on disk")
    ap.add_argument("--no-batch", action="store_true", help="pysyncobj only: appendEntriesUseBatch=False")
    ap.add_argument("--encrypt", action="store_true", help="swarmkit-py only: WAL and snapshots encrypted at rest")
    ap.add_argument("--profile", help="swarmkit-py only: cProfile every member (nN.pstats) and the "
                    "connection client (client.pstats), stats in this directory")
    ap.add_argument("--pyspy", help="swarmkit-py only: py-spy every member and the connection client "
                    "(nN.txt, client.txt: raw stacks for bench/pyspy_top.py) into this directory")
    ap.add_argument("--out", help="also append the JSON line to this file (e.g. bench/results.jsonl)")
    args = ap.parse_args(argv)
    args.out = os.path.abspath(args.out) if args.out else None  # before the chdir below
    args.profile = os.path.abspath(args.profile) if args.profile else None
    args.pyspy = os.path.abspath(args.pyspy) if args.pyspy else None
    for d in (args.profile, args.pyspy):
        if d:
            os.makedirs(d, exist_ok=True)
    if args.system == "pysyncobj" and args.client != "inprocess":
        ap.error("pysyncobj has no client protocol: only --client inprocess")
    if args.system == "swarmkit-py" and (args.journal or args.no_batch):
        ap.error("--journal/--no-batch are PySyncObj options (ours always writes and fsyncs its WAL)")
    args.batch = max(1, min(args.batch, args.inflight))
    args.connections = max(1, min(args.connections, args.inflight // args.batch))

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.system}-") as workdir:
        # Members start with `python -m`, which puts the cwd first on sys.path: run from the
        # temp dir so they import the same swarmkit_py as this process (PYTHONPATH snapshot or
        # the installed tree), not whatever checkout the shell happens to be in.
        os.chdir(workdir)
        if args.system == "swarmkit-py":
            prof = None
            if args.profile and args.client == "connection":
                import cProfile
                import time

                prof = cProfile.Profile(time.thread_time)  # the client's own CPU, like the members'
                prof.enable()
            r = asyncio.run(_run_ours(args, workdir))
            if prof is not None:
                prof.disable()
                prof.dump_stats(os.path.join(args.profile, "client.pstats"))
        else:
            r = _run_pysyncobj(args, workdir)
    variant = []
    if args.journal:
        variant.append("journal")
    if args.no_batch:
        variant.append("no-batch")
    result = {
        "bench": "throughput",
        "system": args.system,
        "nodes": args.nodes,
        "value_size": args.value_size,
        "inflight": args.inflight,
        "client": args.client,
        "variant": "+".join(variant) or "default",
        "writes_per_s": round(r["writes"] / args.seconds, 1),
        "p50_ms": None if r["p50_ms"] is None else round(r["p50_ms"], 3),
        "p99_ms": None if r["p99_ms"] is None else round(r["p99_ms"], 3),
        "errors": r["errors"],
        "leader_id": r.get("leader_id"),
        "leader_kept": r.get("leader_kept"),
        "term_changes": r.get("term_changes"),
        "seconds": args.seconds,
        "loadavg_1m_at_start": round(load0, 2),
        "commit": git_commit(),
        **(source_id() if args.system == "swarmkit-py" else {}),
    }
    if args.system == "swarmkit-py":
        result["encrypted"] = bool(args.encrypt)
    if r.get("cpu_us_per_write") is not None:
        result["cpu_us_per_write"] = r["cpu_us_per_write"]
    if "fsyncs_per_write" in r:
        result["fsyncs_per_write"] = r["fsyncs_per_write"]
    for k in ("leader_cpu_us_per_write", "follower_cpu_us_per_write", "client_cpu_us_per_write"):
        if k in r:
            result[k] = r[k]
    if args.client == "connection":
        result["connections"] = args.connections
        result["batch"] = args.batch
    emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
