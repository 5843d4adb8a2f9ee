"""What programming an overlay's links costs a node (issue 13, round 15): worker/network/links.py
on real kernel links in a private network namespace (`unshare --net`, made by this script; nothing
of the machine's own links is touched). Prints ONE JSON line: wall time and CPU (this process
and its children: the `ip` and `bridge` processes) of

- a first map: the VXLAN device, the bridge's identity, 254 peers (a /24 block of another node),
  two virtual IPs;
- the next map with one peer added (what a task starting elsewhere on the network costs).

    sudo .venv/bin/python bench/links_bench.py [--out bench/links.jsonl]

Run it with PYTHONPATH on a tree to measure that tree's links.py (round 15 compared pyroute2's
IPRoute, before, with iproute2's commands).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SETUP = ("ip link add skov-bench type bridge && ip link add v0 type veth peer name v1 && "
         "ip addr add 10.99.0.2/24 dev v0 && ip link set v0 up && ip addr add 10.0.5.1/24 dev skov-bench && "
         "ip link set skov-bench up")


def _cpu() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def measure() -> dict:
    from swarmkit_py.worker.network import links

    subprocess.run(SETUP, shell=True, check=True)
    peers = {f"10.0.6.{i}": "10.99.0.3" for i in range(1, 255)}

    def apply(peers: dict[str, str]) -> None:
        links.ensure_vxlan("skov-bench", 4097, "10.99.0.2")
        links.set_bridge_identity("skov-bench", "10.0.5.3", "10.0.5.0/24")
        links.program_peers(4097, peers)
        links.set_extra_addresses("skov-bench", ["10.0.5.1", "10.0.5.3"], ["10.0.5.9", "10.0.5.10"])

    out = {}
    for name, p in (("first_map", peers), ("one_peer_added", {**peers, "10.0.7.1": "10.99.0.4"})):
        c0, t0 = _cpu(), time.perf_counter()
        apply(p)
        out[f"{name}_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        out[f"{name}_cpu_ms"] = round((_cpu() - c0) * 1000, 1)
    out["netlink_library_loaded"] = "pyroute2" in sys.modules
    out["src_path"] = str(Path(links.__file__).resolve().parents[3])  # the tree measured
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        print(json.dumps(measure()))
        return
    p = subprocess.run(["unshare", "--net", sys.executable, __file__, "--inside"], capture_output=True, text=True,
                       env=os.environ)
    if p.returncode:
        sys.exit(p.stderr)
    from _common import emit, git_commit

    emit({"bench": "links", **json.loads(p.stdout), "commit": git_commit()}, args.out)


if __name__ == "__main__":
    main()
