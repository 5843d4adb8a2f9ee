#!/usr/bin/env bash
# Issue 13, "Raft through the path users take": swarmkit-py through real client connections
# (kv.put_many, B writes per request) next to PySyncObj in-process, 3 and 5 nodes, W = 1,000
# and 10,000, 10 B and 1 KiB, fsync on; optionally the tree before the batching (OLD, one
# kv.put per write over 16 connections), interleaved per configuration so background load on
# a shared machine hits all alike. About 6 minutes on 2 vCPUs (9 with OLD). Run it under the
# bench lock:  flock /work/wt/bench.lock bench/run_clientpath.sh
#
# NEW=DIR (and OLD=DIR): snapshots of the trees under test, so edits to the working tree during
# the run do not leak in; make one with
#   mkdir DIR && git archive <commit> swarmkit_py | tar -x -C DIR && echo <commit> > DIR/COMMIT
# Appends to bench/clientpath.jsonl (each line records src_commit and src_sha1 of what ran).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/clientpath.jsonl}
S=${SECONDS_PER_RUN:-5}
: "${NEW:?set NEW to a snapshot of the tree under test (see above)}"
rb() { local src=$1; shift; PYTHONPATH="$src" "$PY" bench/raft_bench.py --seconds "$S" --out "$OUT" "$@"; }
for n in 3 5; do
  for size in 10 1024; do
    for w in 1000 10000; do
      b=$(( w >= 10000 ? 100 : 50 ))  # W/B requests in flight: 20 at W = 1,000, 100 at 10,000
      rb "$NEW" --system swarmkit-py --nodes $n --value-size $size --inflight $w --client connection --connections 4 --batch $b
      rb "$NEW" --system pysyncobj --nodes $n --value-size $size --inflight $w
      if [ -n "${OLD:-}" ]; then
        rb "$OLD" --system swarmkit-py --nodes $n --value-size $size --inflight $w --client connection --connections 16
      fi
    done
  done
done
