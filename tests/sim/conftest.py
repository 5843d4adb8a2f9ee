"""Prints how many simulated schedules passed, whatever pytest's verbosity (CI greps it)."""

from __future__ import annotations

from tests.sim import harness


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    r = harness.RESULTS
    if not r.get("seeds_run"):
        return
    sizes = ", ".join(f"{n} nodes: {c}" for n, c in sorted(r.get("by_size", {}).items()))
    line = f"sim: {r['seeds_passed']} seeds passed of {r['seeds_run']} ({sizes}; {r.get('reads', 0)} linearizable reads checked) in {r['seconds']:.1f}s"
    if r.get("failed"):
        line += f"; FAILED seeds: {r['failed'][:20]} (replay: SIM_SEED=<n> ./scripts/test.sh tests/sim)"
    terminalreporter.write_line(line)
