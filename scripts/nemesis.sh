#!/usr/bin/env bash
# The nemesis suite's long run (issue 10): a lab cluster of 5 managers, clients doing
# read-then-compare-and-set and reads on every manager, random fault schedules (power cuts,
# partitions, frozen hosts, a full disk), every history checked for linearizability.
# Writes report.md / report.json and per round the history (JSON lines), the verdict and a
# timeline plot under --out (default .lab/nemesis-reports/<time>). Exit 1 on any anomaly.
#
#   sudo ./scripts/nemesis.sh --minutes 30 [--lab NAME] [--seed N] [--kinds crash,freeze,...]
#   sudo ./scripts/nemesis.sh --rounds 3 --round-seconds 20 --keep
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m swarmkit_py.testing.nemesis "$@"
