"""Toolkit speed (issue 13): bootstrap cold / warm / idempotent, and read-only commands while a
host is powered off. Needs root (it makes its own lab). Prints ONE JSON line.

    python bench/toolkit_bench.py --lab-name scl [--hosts 7] [--managers 5] [--samples 5] [--cold] [--out F]

- ``bootstrap_first_s``: `invoke bootstrap` on fresh hosts (the wheelhouse of this source tree
  is built when it is not cached yet);
- ``bootstrap_warm_s``: `invoke reset --yes`, then `invoke bootstrap` again (wheelhouse cached);
- ``bootstrap_idempotent_s``: `invoke bootstrap` once more (changes nothing), ``--samples``
  times (median and max);
- ``--cold``: the first bootstrap builds the wheelhouse in a new empty cache (cold); without
  it the cache of this tree is used when it exists (``wheelhouse_cached``);
- ``docker_env_s`` / ``status_s``: `invoke docker-env --host h2` and `invoke status` with h3
  powered off (`invoke lab.crash h3`), each ``--samples`` times (median and max), wall time of
  the whole command, process start included.

Every figure is wall time of the real `invoke` command; the 1-minute load average is recorded
before each group (``load1``), the machine being shared. Each bootstrap also records the CPU it
cost (``*_cpu_operator_s``: the invoke process; ``*_cpu_hosts_s``: every process of the lab's
hosts, from their cgroup), which a loaded machine does not inflate.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, git_commit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INVOKE = str(Path(sys.executable).with_name("invoke"))


ENV = dict(os.environ)


def timed(*args: str) -> float:
    t0 = time.monotonic()
    subprocess.run([INVOKE, *args], cwd=ROOT, check=True, capture_output=True, text=True, timeout=900, env=ENV)
    return round(time.monotonic() - t0, 2)


def lab_cpu_s(lab: str) -> float:
    """CPU seconds used so far by every process of the lab's hosts (their cgroup's cpu.stat)."""
    from swarmkit_py.deploy.lab import Lab

    for line in (Lab(lab).cgroup / "cpu.stat").read_text().splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) / 1e6
    return 0.0


def costed(out: dict, key: str, lab: str, *args: str) -> None:
    """Wall time of `invoke args` as out[key + '_s'], and the CPU it cost: the invoke process
    (``_cpu_operator_s``) and the lab's hosts (``_cpu_hosts_s``), figures that do not depend on
    how loaded the shared machine is (wall times do)."""
    import resource

    c0, h0 = resource.getrusage(resource.RUSAGE_CHILDREN), lab_cpu_s(lab)
    out[f"{key}_s"] = timed(*args)
    c1, h1 = resource.getrusage(resource.RUSAGE_CHILDREN), lab_cpu_s(lab)
    out[f"{key}_cpu_operator_s"] = round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 2)
    out[f"{key}_cpu_hosts_s"] = round(h1 - h0, 2)


def wheelhouse_cached() -> bool:
    from swarmkit_py.deploy import wheelhouse

    tar = wheelhouse.cache_dir() / f"swarmkit-py-{wheelhouse.source_version()}.tar"
    return tar.exists()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab-name", required=True)
    ap.add_argument("--hosts", type=int, default=7)
    ap.add_argument("--managers", type=int, default=5)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--cold", action="store_true",
                    help="build the wheelhouse in a new empty cache for the first bootstrap (cold)")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.cold:
        import tempfile

        ENV["SWARMKIT_WHEELHOUSE_DIR"] = os.environ["SWARMKIT_WHEELHOUSE_DIR"] = tempfile.mkdtemp(prefix="bench-wh-")
    inv = str(ROOT / ".lab" / args.lab_name / "hosts.yml")
    out: dict = {"bench": "toolkit", "hosts": args.hosts, "managers": args.managers, "commit": git_commit()}
    timed("lab.up", "--name", args.lab_name, "--hosts", str(args.hosts))
    try:
        boot = ("bootstrap", "--managers", str(args.managers), "--inventory", inv)
        out["load1_bootstrap"] = round(os.getloadavg()[0], 2)
        out["wheelhouse_cached"] = wheelhouse_cached()
        costed(out, "bootstrap_first", args.lab_name, *boot)
        timed("reset", "--yes", "--inventory", inv)
        out["load1_warm"] = round(os.getloadavg()[0], 2)
        costed(out, "bootstrap_warm", args.lab_name, *boot)
        idem: dict = {}
        for i in range(args.samples):
            costed(idem, str(i), args.lab_name, *boot)
        xs = [idem[f"{i}_s"] for i in range(args.samples)]
        out["bootstrap_idempotent_s"], out["bootstrap_idempotent_max_s"] = round(statistics.median(xs), 2), max(xs)
        out["bootstrap_idempotent_cpu_operator_s"] = round(statistics.median(
            idem[f"{i}_cpu_operator_s"] for i in range(args.samples)), 2)
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
