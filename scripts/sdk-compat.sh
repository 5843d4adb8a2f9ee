#!/usr/bin/env bash
# The docker SDK's own integration tests (services, swarm, nodes) against a swarmkit-py
# cluster: the one DOCKER_HOST names (a lab: eval "$(invoke docker-env)"), else one made on
# loopback. Not part of the default suite (network downloads, minutes). Prints pass/fail
# counts and each failure; see scripts/sdk_compat.py for what the harness adapts and why.
#   scripts/sdk-compat.sh [--out summary.json] [-- extra pytest args]
# Environment: DOCKER_PY_SRC=<docker-py tree with tests/integration> instead of the sdist.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || ./scripts/setup.sh
[ -n "${DOCKER_HOST:-}" ] || ./scripts/docker-up.sh >/dev/null
exec .venv/bin/python scripts/sdk_compat.py "$@"
