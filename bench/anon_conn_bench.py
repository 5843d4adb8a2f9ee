"""What one idle anonymous TLS connection to port 2377 costs a manager, measured with tracemalloc.

    python bench/anon_conn_bench.py [--conns 200] [--top 8] [--out bench/results.jsonl]

Measures twice, each in a fresh process: as served now (`rpc.tls_accept`: a 4 KiB read buffer
until the peer presents a certificate) and with asyncio's own 256 KiB buffer put back
(`--pre-auth-buffer 262144`, what `asyncio.start_server(ssl=...)` allocated before).

The server is the real one (`RpcServer` with the cluster port's policy and TLS context:
optional client certificates, a real cluster CA), in this process with tracemalloc on. A
separate client process opens `--conns` TLS connections without a certificate, completes
the handshakes and then sends nothing, as a parked attacker does (the anonymous cap is raised
to `--conns` for the measurement, so the connections are held rather than evicted). Once
every connection is accepted and the allocations have settled, it reports per connection:

- `traced_bytes_per_conn`: Python allocations (tracemalloc's current size, after minus
  before, divided by the count), and the allocation sites that hold them (`--top`);
- `rss_bytes_per_conn`: the process RSS delta, which also holds what OpenSSL allocates in C
  (its SSL object and record buffers are invisible to tracemalloc).

Prints one JSON line with the 1-minute load average (figures from a loaded machine).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

from _common import emit, git_commit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swarmkit_py.ca import CertRole, RootCA, generate_key_and_csr  # noqa: E402
from swarmkit_py.ca.optional_tls import server_context_optional_client  # noqa: E402
from swarmkit_py.manager.admission import cluster_port_policy  # noqa: E402
from swarmkit_py.rpc import RpcServer, tls_accept  # noqa: E402

CLIENT = r"""
import asyncio, ssl, sys
async def main(port, n):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conns = [await asyncio.open_connection("127.0.0.1", port, ssl=ctx) for _ in range(n)]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for _, w in conns:
        w.close()
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def measure(conns: int, top: int) -> dict:
    ca = RootCA.create()
    key, csr = generate_key_and_csr("benchmanager0000000000000")
    cert = ca.issue_node_certificate(csr, "benchmanager0000000000000", CertRole.MANAGER, "benchcluster",
                                     ip_addresses=["127.0.0.1"]).cert_pem
    policy = dataclasses.replace(cluster_port_policy(), max_anonymous=conns + 8, anonymous_idle_timeout=3600,
                                 anonymous_lifetime=3600)
    server = RpcServer("127.0.0.1", 0, ssl=server_context_optional_client(cert, key, ca.cert_pem), policy=policy)
    await server.start()
    # One connection first, so that one-time allocations (caches, the first TLS session) are
    # not charged to the measured ones.
    warm = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, str(server.bound_port), "1",
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await warm.stdout.readline()
    await _settle(server, 1)
    gc.collect()
    before_traced, before_rss = tracemalloc.take_snapshot(), rss()
    base = tracemalloc.get_traced_memory()[0]
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, str(server.bound_port), str(conns),
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await proc.stdout.readline()
    await _settle(server, conns + 1)
    gc.collect()
    after = tracemalloc.take_snapshot()
    traced = tracemalloc.get_traced_memory()[0] - base
    rss_delta = rss() - before_rss
    sites = [
        {"site": f"{Path(s.traceback[0].filename).name}:{s.traceback[0].lineno}",
         "bytes_per_conn": round(s.size_diff / conns)}
        for s in after.compare_to(before_traced, "lineno")[:top]
    ]
    for p in (proc, warm):
        p.stdin.close()
        await p.wait()
    await server.stop()
    return {"traced_bytes_per_conn": round(traced / conns), "rss_bytes_per_conn": round(rss_delta / conns),
            "top_sites": sites}


async def _settle(server: RpcServer, n: int) -> None:
    for _ in range(200):
        if len(server.connections) >= n:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--pre-auth-buffer", type=int, help="measure once, in this process, with this read buffer")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.pre_auth_buffer is not None:
        tls_accept.LeanSSLProtocol.max_size = args.pre_auth_buffer
        tracemalloc.start(1)
        print(json.dumps(asyncio.run(measure(args.conns, args.top))))
        return
    load = round(os.getloadavg()[0], 2)
    runs = {}
    for name, size in (("now", tls_accept.PRE_AUTH_READ_BUFFER), ("asyncio_default", 256 * 1024)):
        out = subprocess.run([sys.executable, __file__, "--conns", str(args.conns), "--top", str(args.top),
                              "--pre-auth-buffer", str(size)], capture_output=True, text=True, check=True)
        runs[name] = {"pre_auth_read_buffer": size, **json.loads(out.stdout.strip().splitlines()[-1])}
    emit({"bench": "anon-conn", "conns": args.conns,
          "traced_bytes_per_conn": runs["now"]["traced_bytes_per_conn"],
          "rss_bytes_per_conn": runs["now"]["rss_bytes_per_conn"],
          "before_traced_bytes_per_conn": runs["asyncio_default"]["traced_bytes_per_conn"],
          "before_rss_bytes_per_conn": runs["asyncio_default"]["rss_bytes_per_conn"],
          "runs": runs, "load1": load, "commit": git_commit()}, args.out)


if __name__ == "__main__":
    main()
