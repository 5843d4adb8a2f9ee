#!/usr/bin/env bash
# The whole test suite: unit, seeded simulation (>= 1,000 seeds), integration, lab.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export SIM_SEEDS=${SIM_SEEDS:-1000}
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
