"""A local demo of the Raft engine: five members as OS processes on loopback.

It writes, SIGKILLs the leader, shows the new leader taking over with every acknowledged write
intact, restarts the dead member and shows it catching up. The README's first command runs it
until the deployment toolkit takes over that role.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from .kv.cluster import LocalCluster


def _table(rows: list[dict]) -> str:
    head = f"{'MEMBER':<7}{'ADDRESS':<22}{'ROLE':<10}{'TERM':>5}{'COMMIT':>8}{'APPLIED':>8}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['id']:<7}{r.get('addr', ''):<22}{r['role']:<10}{r['term']:>5}{r['commit']:>8}{r['applied']:>8}"
        )
    return "\n".join(lines)


async def _status(c: LocalCluster) -> str:
    rows = []
    for nid, m in c.members.items():
        if not m.alive:
            rows.append({"id": nid, "addr": m.addr, "role": "DOWN", "term": 0, "commit": 0, "applied": 0})
            continue
        st = await c.status(nid)
        st["addr"] = m.addr
        rows.append(st)
    return _table(rows)


async def run(n: int, writes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="swarmkit-py-demo-") as d:
        c = LocalCluster(n, d)
        try:
            t0 = time.monotonic()
            await c.start()
            leader = await c.wait_leader()
            print(f"{n} members up, member {leader} elected leader in {time.monotonic() - t0:.2f}s\n")
            t0 = time.monotonic()
            for i in range(writes):
                await c.put(leader, f"key{i}", b"value%d" % i)
            dt = time.monotonic() - t0
            print(f"{writes} writes, one at a time, fsynced on a majority: {dt * 1000 / writes:.2f} ms each")
            print(await _status(c), "\n")

            print(f"SIGKILL the leader (member {leader}) ...")
            await c.kill(leader)
            t0 = time.monotonic()
            survivor = next(i for i in c.members if i != leader)
            while True:
                try:
                    await c.put(survivor, "after-failover", b"ok", timeout=0.5)
                    break
                except Exception:
                    await asyncio.sleep(0.01)
            new_leader = await c.wait_leader(exclude={leader})
            print(f"member {new_leader} leads; writes accepted again {time.monotonic() - t0:.2f}s after the kill")
            lost = [i for i in range(writes) if await c.get(survivor, f"key{i}") != b"value%d" % i]
            print(f"acknowledged writes lost: {len(lost)}")
            print(await _status(c), "\n")

            print(f"restart member {leader} ...")
            await c.restart(leader)
            want = (await c.status(new_leader))["commit"]
            t0 = time.monotonic()
            while (await c.status(leader))["applied"] < want:
                await asyncio.sleep(0.02)
            print(f"member {leader} caught up in {time.monotonic() - t0:.2f}s")
            print(await _status(c))
        finally:
            await c.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--writes", type=int, default=200)
    args = ap.parse_args(argv)
    asyncio.run(run(args.nodes, args.writes))


if __name__ == "__main__":
    main()
