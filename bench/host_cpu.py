"""Where a lab's host CPU goes during one command: every process of the lab's hosts, by kind.

    python bench/host_cpu.py --lab-name lb -- invoke bootstrap --managers 5 --inventory .lab/lb/hosts.yml

Samples /proc/<pid>/stat of every process in the lab's cgroups every 20 ms while the command
runs and keeps each process's last user+system time, then sums them by what the process is
(its command line: the release install's tar/gzip, venv creation, the agent, the `swarmkit-py`
CLI, sshd, dockerd/containerd, shells). A process that lives less than one sample is missed:
the difference to the cgroups' own total (`cpu.stat`) is printed as `unattributed`. Prints
one JSON line (seconds of CPU by kind); `--out` appends it to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TICK = os.sysconf("SC_CLK_TCK")
KINDS = [  # (kind, a word of the command line); first match wins
    ("installer", " -m installer"), ("venv", " -m venv"), ("agent", "swarmkit-py agent"),
    ("cli init", "swarmkit-py init"), ("cli join", "swarmkit-py join"),
    ("cli client-cert", "swarmkit-py client-cert"), ("cli other", "bin/swarmkit-py"),
    ("tar+gzip", "tar "), ("tar+gzip", "gzip"), ("tar+gzip", "zstd"), ("sha256sum", "sha256sum"),
    ("sshd", "sshd"), ("docker engine", "dockerd"), ("docker engine", "containerd"),
    ("python other", "python"),
]


def kind(cmd: str) -> str:
    for k, word in KINDS:
        if word in cmd:
            return k
    return "shell and tools"


def pids(cg: Path) -> list[int]:
    out = []
    for f in cg.rglob("cgroup.procs"):
        try:
            out += [int(x) for x in f.read_text().split()]
        except OSError:
            pass
    return out


def cpu_total(cg: Path) -> float:
    for line in (cg / "cpu.stat").read_text().splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) / 1e6
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab-name", required=True)
    ap.add_argument("--out")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    from swarmkit_py.deploy.lab import Lab

    cg = Lab(args.lab_name).cgroup
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    seen: dict[tuple[int, int], tuple[str, float]] = {}  # (pid, start time) -> (kind, cpu s)
    base = {}
    for pid in pids(cg):  # what already-running processes had used before the command
        try:
            st = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            base[(pid, int(st[19]))] = (int(st[11]) + int(st[12])) / TICK
        except (OSError, IndexError):
            pass
    h0, t0 = cpu_total(cg), time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        for pid in pids(cg):
            try:
                st = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                key = (pid, int(st[19]))
                # read each time: an sshd child becomes the session's shell, a shell execs a tool
                c = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                seen[key] = (kind(c) if c else seen.get(key, ("shell and tools",))[0],
                             (int(st[11]) + int(st[12])) / TICK - base.get(key, 0.0))
            except (OSError, IndexError):
                pass
        time.sleep(0.02)
    by: dict[str, float] = defaultdict(float)
    for k, s in seen.values():
        by[k] += s
    total = cpu_total(cg) - h0
    from _common import git_commit

    out = {"bench": "host_cpu", "commit": git_commit(), "cmd": " ".join(cmd), "rc": proc.returncode,
           "wall_s": round(time.monotonic() - t0, 2), "hosts_cpu_s": round(total, 2),
           **{k: round(v, 2) for k, v in sorted(by.items(), key=lambda kv: -kv[1])},
           "unattributed": round(total - sum(by.values()), 2), "load1": round(os.getloadavg()[0], 2)}
    line = json.dumps(out)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
