"""Warm bootstraps of several source trees on ONE lab, interleaved: `invoke reset --yes`, then
`invoke bootstrap --managers 5` of tree A, B, C, A, B, C... (issue 13). Interleaving puts each
round's trees under the same load, which on a shared machine moves more than the code does.
Each tree runs its own `invoke` (cwd on it, PYTHONPATH on it unless it is this tree; a tree is
a checkout or a `git archive` of a commit), so its own toolkit deploys its own release. Needs
root (it makes its own lab). One JSON line per bootstrap:

    python bench/bootstrap_ab.py --lab-name bx --rounds 3 --out F . /tmp/before-tree

``warm_s`` is the wall time of the `invoke` process; ``cpu_operator_s`` its CPU;
``cpu_hosts_s`` every process of the lab's hosts (their cgroup's cpu.stat); ``load1`` the
1-minute load average before it. Each tree first bootstraps once (its wheelhouse built or
taken from its cache, not measured) and is reset.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INVOKE = str(Path(sys.executable).with_name("invoke"))


def main() -> None:
    from swarmkit_py.deploy.lab import Lab

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab-name", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--managers", type=int, default=5)
    ap.add_argument("--out")
    ap.add_argument("trees", nargs="+")
    args = ap.parse_args()
    trees = [str(Path(t).resolve()) for t in args.trees]
    inv = str(ROOT / ".lab" / args.lab_name / "hosts.yml")

    def run(tree: str, *cmd: str, check: bool = True) -> None:
        env = dict(os.environ)
        if tree != str(ROOT):
            env["PYTHONPATH"] = tree
        subprocess.run([INVOKE, *cmd], cwd=tree, env=env, capture_output=True, text=True, check=check, timeout=900)

    def hosts_cpu() -> float:
        for line in (Lab(args.lab_name).cgroup / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        return 0.0

    def commit(tree: str) -> str:
        r = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 and Path(tree, ".git").exists() else Path(tree).name

    boot = ("bootstrap", "--managers", str(args.managers), "--inventory", inv)
    reset = ("reset", "--yes", "--inventory", inv)
    run(str(ROOT), "lab.up", "--name", args.lab_name, "--hosts", "7")
    try:
        for t in trees:
            run(t, *boot)
            run(t, *reset)
        for i in range(args.rounds):
            for t in trees:
                load = os.getloadavg()[0]
                c0, h0 = resource.getrusage(resource.RUSAGE_CHILDREN), hosts_cpu()
                t0 = time.monotonic()
                run(t, *boot)
                wall = time.monotonic() - t0
                c1, h1 = resource.getrusage(resource.RUSAGE_CHILDREN), hosts_cpu()
                line = {"bench": "bootstrap_ab", "tree": commit(t), "round": i, "load1": round(load, 2),
                        "warm_s": round(wall, 2),
                        "cpu_operator_s": round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 2),
                        "cpu_hosts_s": round(h1 - h0, 2)}
                print(json.dumps(line), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(line) + "\n")
                run(t, *reset)
    finally:
        run(str(ROOT), "lab.down", "--name", args.lab_name, check=False)


if __name__ == "__main__":
    main()
