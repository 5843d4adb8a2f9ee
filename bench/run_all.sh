#!/usr/bin/env bash
# The full side-by-side matrix behind bench/README.md (about 12-15 minutes on 2 vCPUs).
# Systems are interleaved per configuration so background load on a shared machine hits both
# alike. Appends to bench/results.jsonl (move the old one away first), then draws the plot.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results.jsonl}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
TRIALS=${TRIALS:-20}
# SNAPSHOT=DIR: run swarmkit_py from DIR instead of the working tree, so edits others make to
# the shared tree during the run do not change the code under test halfway. Make it with
#   mkdir DIR && git archive HEAD swarmkit_py | tar -x -C DIR && git rev-parse --short HEAD > DIR/COMMIT
# Each JSON line records src_path, src_sha1 and src_commit of what the members ran.
if [ -n "${SNAPSHOT:-}" ]; then export PYTHONPATH="$SNAPSHOT${PYTHONPATH:+:$PYTHONPATH}"; fi
rb() { "$PY" bench/raft_bench.py --seconds "$SECONDS_PER_RUN" --out "$OUT" "$@"; }
for n in 3 5; do
  for size in 10 1024; do
    for w in 1000 10000; do
      rb --system swarmkit-py --nodes $n --value-size $size --inflight $w --client inprocess
      rb --system pysyncobj   --nodes $n --value-size $size --inflight $w
      rb --system swarmkit-py --nodes $n --value-size $size --inflight $w --client connection
    done
  done
  rb --system pysyncobj   --nodes $n --value-size 10 --inflight 10000 --journal
  rb --system swarmkit-py --nodes $n --value-size 10 --inflight 1 --client inprocess
  rb --system pysyncobj   --nodes $n --value-size 10 --inflight 1
  rb --system swarmkit-py --nodes $n --value-size 10 --inflight 1 --client connection
  rb --system pysyncobj   --nodes $n --value-size 10 --inflight 1 --no-batch
done
"$PY" bench/failover_bench.py --system swarmkit-py --nodes 5 --trials "$TRIALS" --out "$OUT"
"$PY" bench/failover_bench.py --system pysyncobj   --nodes 5 --trials "$TRIALS" --out "$OUT"
"$PY" bench/plot.py "$OUT" -o bench/raft_bench.png
