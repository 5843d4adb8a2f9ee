#!/usr/bin/env bash
# The whole test suite: unit, seeded simulation (>= 1,000 seeds), integration, lab.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export SIM_SEEDS=${SIM_SEEDS:-1000}
# Two pytest-xdist workers: most tests wait on real processes, engines and hosts, so two share
# CI's 2 cores well; the lab tests run one at a time, and so do the tests on the machine's Docker engine (tests/conftest.py).
# TEST_WORKERS=0 runs everything in this process, one test at a time.
WORKERS=${TEST_WORKERS:-2}
XDIST=()
[ "$WORKERS" = 0 ] || XDIST=(-n "$WORKERS" --dist loadgroup)
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${XDIST[@]}" "$@"
