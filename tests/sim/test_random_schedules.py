"""Thousands of random fault schedules of 3-, 5- and 7-member clusters (see harness.py).

- `SIM_SEEDS=N` (default 1000, what CI runs) runs seeds `SIM_SEED_START` .. +N, spread over
  every CPU; a long mode is just a large N (`SIM_SEEDS=100000`).
- `SIM_SEED=n` runs seed n alone, in this process (add `SIM_TRACE=1` to print its events).
- `SIM_STEPS` sets the time units of chaos per seed (default 200).
The number of seeds that passed is printed at the end of the run (conftest.py), and a
failure names the seed and the command that replays it.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.sim import harness
from tests.sim import seeds as seed_runs
from tests.sim.harness import SimFailure, run_seed

BACKGROUND: seed_runs.Background | None = None
"""The seeds already running at idle priority since collection (tests/conftest.py), if any."""


def seed_range() -> tuple[int, int]:
    """(first seed, count) of a run of many seeds: SIM_SEED_START, SIM_SEEDS."""
    return int(os.environ.get("SIM_SEED_START", "0")), int(os.environ.get("SIM_SEEDS", "1000"))


# 1,000 seeds are 400-500 CPU seconds (200-250 s on 2 idle cores): the suite-wide 300 s
# per-test timeout is for hung tests, not for this one.
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

    start, count = seed_range()
    started = time.monotonic()
    bg, waited = BACKGROUND, None
    if bg is not None and (bg.start, bg.count) == (start, count):
        results = bg.results(timeout=1100)  # running since collection: what is left to wait
        waited, started = time.monotonic() - started, bg.started
    else:
        results = seed_runs.run(range(start, start + count))
    failures = [(seed, nodes, msg) for seed, nodes, msg, _ in results if msg]
    by_size: dict[int, int] = {}
    reads = 0
    for _, nodes, msg, stats in results:
        if not msg:
            by_size[nodes] = by_size.get(nodes, 0) + 1
            reads += stats["reads"]
    harness.RESULTS.update(
        seeds_run=count, seeds_passed=count - len(failures), failed=[s for s, _, _ in failures],
        seconds=time.monotonic() - started, by_size=by_size, reads=reads, waited=waited,
    )
    if failures:
        shown = "\n\n".join(msg for _, _, msg in failures[:5])
        more = f"\n... and {len(failures) - 5} more" if len(failures) > 5 else ""
        pytest.fail(
            f"{len(failures)} of {count} seeds failed: {[s for s, _, _ in failures][:50]}\n\n{shown}{more}",
            pytrace=False,
        )
