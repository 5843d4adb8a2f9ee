#!/bin/sh
# Settled warm bootstraps (issue 13, rounds 10-11): for each round and each tree in turn,
# `invoke reset`, 75 s idle (so the 1-minute load decays), one warm `bootstrap --managers 5`,
# then its idempotent re-run. One JSON line each on stdout. Run it under the bench lock:
#
#     flock /work/wt/bench.lock bench/bootstrap_settled.sh LAB ROUNDS TREE...
#
# A tree is a checkout or a `git archive` of a commit (with its .lab/wheelhouse cache copied
# in to skip the build); each runs its own `invoke` (cwd and PYTHONPATH on it), as
# bench/bootstrap_ab.py does. Brings the lab up and takes it down. hosts_cpu_s: the lab's
# cgroup (every process of its hosts).
set -u
lab=$1 rounds=$2; shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
inv=$here/.lab/$lab/hosts.yml
invoke=$here/.venv/bin/invoke
cg=/sys/fs/cgroup/unified/skpy-$lab/cpu.stat
run() (t=$1; shift; cd "$t" && PYTHONPATH=$t "$invoke" "$@" >/dev/null 2>&1)
now() { date +%s.%N; }
cpu() { grep usage_usec "$cg" | cut -d' ' -f2; }
"$invoke" lab.up --name "$lab" --hosts 7 >/dev/null 2>&1 || exit 1
for t in "$@"; do run "$t" bootstrap --managers 5 --inventory "$inv"; run "$t" reset --yes --inventory "$inv"; done
i=0
while [ "$i" -lt "$rounds" ]; do
  for t in "$@"; do
    sleep 75
    l=$(cut -d' ' -f1 /proc/loadavg); c0=$(cpu); s=$(now)
    run "$t" bootstrap --managers 5 --inventory "$inv"; rc=$?
    e=$(now); c1=$(cpu)
    printf '{"bench": "bootstrap_settled", "tree": "%s", "round": %d, "rc": %d, "load1": %s, "warm_s": %.2f, "cpu_hosts_s": %.2f}\n' \
      "$(basename "$t")" "$i" "$rc" "$l" "$(echo "$e - $s" | bc)" "$(echo "($c1 - $c0) / 1000000" | bc -l)"
    l=$(cut -d' ' -f1 /proc/loadavg); s=$(now)
    run "$t" bootstrap --managers 5 --inventory "$inv"; rc=$?
    printf '{"bench": "bootstrap_rerun", "tree": "%s", "round": %d, "rc": %d, "load1": %s, "rerun_s": %.2f}\n' \
      "$(basename "$t")" "$i" "$rc" "$l" "$(echo "$(now) - $s" | bc)"
    run "$t" reset --yes --inventory "$inv"
  done
  i=$((i + 1))
done
"$invoke" lab.down --name "$lab" >/dev/null 2>&1
