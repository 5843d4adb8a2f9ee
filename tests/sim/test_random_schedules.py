"""Thousands of random fault schedules of 3-, 5- and 7-member clusters (see harness.py).

- `SIM_SEEDS=N` (default 1000, what CI runs) runs seeds `SIM_SEED_START` .. +N, spread over
  every CPU; a long mode is just a large N (`SIM_SEEDS=100000`).
- `SIM_SEED=n` runs seed n alone, in this process (add `SIM_TRACE=1` to print its events).
- `SIM_STEPS` sets the time units of chaos per seed (default 200).
The number of seeds that passed is printed at the end of the run (conftest.py), and a
failure names the seed and the command that replays it.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from tests.sim import harness
from tests.sim.harness import SimFailure, run_seed


def _one(seed: int) -> tuple[int, int, str | None, dict | None]:
    try:
        stats = run_seed(seed)
    except SimFailure as e:
        return seed, (3, 5, 7)[seed % 3], str(e), None
    return seed, stats["nodes"], None, stats


# 1,000 seeds take about 80 s on CI's 2 cores and four times that on a loaded machine: the
# suite-wide 300 s per-test timeout is for hung tests, not for this one.
@pytest.mark.timeout(1200)
def test_random_schedules(record_property):
    try:
        _run_schedules()
    finally:  # what ran reaches the terminal summary, also from a pytest-xdist worker
        record_property("sim", dict(harness.RESULTS))


def _run_schedules():
    single = os.environ.get("SIM_SEED")
    if single is not None:
        started = time.monotonic()
        seed = int(single)
        try:
            stats = run_seed(seed)
        except SimFailure as e:
            harness.RESULTS.update(seeds_run=1, seeds_passed=0, failed=[seed], seconds=time.monotonic() - started)
            pytest.fail(str(e), pytrace=False)
        harness.RESULTS.update(seeds_run=1, seeds_passed=1, failed=[], seconds=time.monotonic() - started,
                               by_size={stats["nodes"]: 1}, reads=stats["reads"])
        return

    count = int(os.environ.get("SIM_SEEDS", "1000"))
    start = int(os.environ.get("SIM_SEED_START", "0"))
    seeds = range(start, start + count)
    workers = max(1, min(os.cpu_count() or 1, count))
    started = time.monotonic()
    if workers == 1:
        results = [_one(s) for s in seeds]
    else:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            results = list(pool.map(_one, seeds, chunksize=8))
    failures = [(seed, nodes, msg) for seed, nodes, msg, _ in results if msg]
    by_size: dict[int, int] = {}
    reads = 0
    for _, nodes, msg, stats in results:
        if not msg:
            by_size[nodes] = by_size.get(nodes, 0) + 1
            reads += stats["reads"]
    harness.RESULTS.update(
        seeds_run=count, seeds_passed=count - len(failures), failed=[s for s, _, _ in failures],
        seconds=time.monotonic() - started, by_size=by_size, reads=reads,
    )
    if failures:
        shown = "\n\n".join(msg for _, _, msg in failures[:5])
        more = f"\n... and {len(failures) - 5} more" if len(failures) > 5 else ""
        pytest.fail(
            f"{len(failures)} of {count} seeds failed: {[s for s, _, _ in failures][:50]}\n\n{shown}{more}",
            pytrace=False,
        )
