"""Top entries of a py-spy raw profile: `python bench/pyspy_top.py leader.txt [-n 20] [--md]`.

Reads the collapsed stacks `py-spy record -f raw` writes (``frame;frame;...;leaf count``, as
``scale_bench.py --profile X.txt`` asks for) and prints, per function (file:function, the line
dropped), its share of all samples as the leaf ("self": where the CPU went) and anywhere on the
stack ("inclusive": what it caused), biggest first. Recursion is counted once per stack.
``--md`` prints Markdown table rows for bench/README.md.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
_PREFIXES = ("/work/wt/", ".venv/lib/python3.11/site-packages/", "/usr/lib/python3.11/",
             "/usr/local/lib/python3.11/")


def frame_key(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for p in _PREFIXES:
        if p in path:
            path = path.split(p, 1)[1]
    path = re.sub(r"^[^/]+/swarmkit_py/", "swarmkit_py/", path)
    return f"{path}:{m['func']}"


def read(path: Path) -> tuple[Counter, Counter, int]:
    self_c: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_key(f) for f in stack.split(";") if f]
        # py-spy puts "process ..."/"thread ..." roots first; keep only code frames
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        self_c[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    return self_c, incl, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", type=Path)
    p.add_argument("-n", type=int, default=20)
    p.add_argument("--md", action="store_true")
    p.add_argument("--match", default="", help="only functions whose key contains this")
    args = p.parse_args()
    self_c, incl, total = read(args.profile)
    if not total:
        raise SystemExit(f"{args.profile}: no samples")
    for title, counter in (("self", self_c), ("inclusive", incl)):
        rows = [(k, v) for k, v in counter.most_common() if args.match in k][: args.n]
        if args.md:
            print(f"\n| {title} % | function |\n|---|---|")
            for k, v in rows:
                print(f"| {100 * v / total:.1f} | `{k}` |")
        else:
            print(f"== {title} ({total} samples)")
            for k, v in rows:
                print(f"{100 * v / total:6.1f}%  {k}")


if __name__ == "__main__":
    main()
