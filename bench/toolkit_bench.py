"""Toolkit speed (issue 13): bootstrap cold / warm / idempotent, and read-only commands while a
host is powered off. Needs root (it makes its own lab). Prints ONE JSON line.

    python bench/toolkit_bench.py --lab-name scl [--hosts 7] [--managers 5] [--samples 5] [--out F]

- ``bootstrap_first_s``: `invoke bootstrap` on fresh hosts (the wheelhouse of this source tree
  is built when it is not cached yet: cold for a new tree, warm otherwise: ``wheelhouse_cached``);
- ``bootstrap_warm_s``: `invoke reset --yes`, then `invoke bootstrap` again (wheelhouse cached);
- ``bootstrap_idempotent_s``: `invoke bootstrap` once more (changes nothing);
- ``docker_env_s`` / ``status_s``: `invoke docker-env --host h2` and `invoke status` with h3
  powered off (`invoke lab.crash h3`), each ``--samples`` times (median and max), wall time of
  the whole command, process start included.

Every figure is wall time of the real `invoke` command; the 1-minute load average is recorded
before each group (``load1``), the machine being shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, git_commit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INVOKE = str(Path(sys.executable).with_name("invoke"))


def timed(*args: str) -> float:
    t0 = time.monotonic()
    subprocess.run([INVOKE, *args], cwd=ROOT, check=True, capture_output=True, text=True, timeout=900)
    return round(time.monotonic() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab-name", required=True)
    ap.add_argument("--hosts", type=int, default=7)
    ap.add_argument("--managers", type=int, default=5)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args()
    inv = str(ROOT / ".lab" / args.lab_name / "hosts.yml")
    out: dict = {"bench": "toolkit", "hosts": args.hosts, "managers": args.managers, "commit": git_commit()}
    timed("lab.up", "--name", args.lab_name, "--hosts", str(args.hosts))
    try:
        boot = ("bootstrap", "--managers", str(args.managers), "--inventory", inv)
        out["load1_bootstrap"] = round(os.getloadavg()[0], 2)
        out["bootstrap_first_s"] = timed(*boot)
        timed("reset", "--yes", "--inventory", inv)
        out["bootstrap_warm_s"] = timed(*boot)
        out["bootstrap_idempotent_s"] = timed(*boot)
        timed("lab.crash", "--name", args.lab_name, "h3")
        out["load1_read_only"] = round(os.getloadavg()[0], 2)
        for key, cmd in (("docker_env", ("docker-env", "--host", "h2", "--inventory", inv)),
                         ("status", ("status", "--inventory", inv))):
            xs = [timed(*cmd) for _ in range(args.samples)]
            out[f"{key}_median_s"], out[f"{key}_max_s"] = round(statistics.median(xs), 2), max(xs)
    finally:
        timed("lab.down", "--name", args.lab_name)
    out["load1_end"] = round(os.getloadavg()[0], 2)
    emit(out, args.out)


if __name__ == "__main__":
    main()
