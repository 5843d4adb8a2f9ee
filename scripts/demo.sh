#!/usr/bin/env bash
# The main job: bring a 5-manager cluster up locally and show its status.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m swarmkit_py.raft.demo --nodes 5
