"""Fixtures shared across test layers. Keep this small: layer-specific fixtures live with them."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every transaction a writer hands over and its proposer applies from the writer's objects is
# decoded as well and must give equal objects (store/memory.py, `apply_local`): in this process
# and in every agent the tests start, which inherit the environment.
os.environ.setdefault("SWARMKIT_STORE_CHECK_LOCAL", "1")


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker client for the machine's engine, started if needed, holding the task image.

    The engine is left running afterwards: it is the machine's, shared by later sessions.
    """
    import docker

    proc = subprocess.run([str(ROOT / "scripts" / "docker-up.sh")], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"scripts/docker-up.sh failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="session")
def lab_name():
    """`lab_name(kind)`: the name for a test's lab. $SWARMKIT_TEST_LAB wins (engineers sharing
    one machine are each given lab names of their own); else one per process and kind."""

    def name(kind: str) -> str:
        return os.environ.get("SWARMKIT_TEST_LAB") or f"t-{kind}-{os.getpid() % 10000}"

    return name


# Tests that bring up a lab (namespaced hosts, each with its own sshd and dockerd) run one after
# another on one pytest-xdist worker: two labs at once on CI's 2 cores would measure the machine,
# not the product. The integration tests share the machine's one Docker engine and look up task
# containers by service name, so they too run one at a time, on their own worker group. The
# rest (unit, security, sim) is spread over the workers.
_GROUPS = {"lab": "lab", "infra": "lab", "browser": "lab", "nemesis": "lab", "integration": "engine"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT).parts
        if len(parts) > 1 and parts[0] == "tests" and parts[1] in _GROUPS:
            item.add_marker(pytest.mark.xdist_group(_GROUPS[parts[1]]))


# The seeded simulation's 1,000 seeds (400-500 CPU seconds) start at idle priority as soon as
# the suite is collected, and fill the time the cluster and lab tests spend waiting; the test
# itself then collects their results (tests/sim/seeds.py). Not under pytest-xdist, whose workers
# each collect everything, and not for a single seed (SIM_SEED).
_SEEDED = "tests/sim/test_random_schedules.py::test_random_schedules"
_BACKGROUND = pytest.StashKey()


def pytest_collection_finish(session):
    if session.config.option.collectonly or os.environ.get("SIM_SEED") or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    for item in session.items:
        if item.nodeid == _SEEDED:
            from tests.sim.seeds import Background

            item.module.BACKGROUND = Background(*item.module.seed_range())
            session.config.stash[_BACKGROUND] = item.module.BACKGROUND


def pytest_sessionfinish(session, exitstatus):
    bg = session.config.stash.get(_BACKGROUND, None)
    if bg is not None:
        bg.stop()


# The seeded simulation's summary line (CI greps it). The hooks live here, not in tests/sim/, so
# that pytest-xdist's controller, which collects nothing, has them: the figures travel from the
# worker that ran the test as the report's user property "sim".
def pytest_runtest_logreport(report):
    for name, value in report.user_properties:
        if name == "sim" and report.when == "call":
            from tests.sim import harness

            harness.RESULTS.update(value)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from tests.sim import harness

    r = harness.RESULTS
    if not r.get("seeds_run"):
        return
    sizes = ", ".join(f"{n} nodes: {c}" for n, c in sorted(r.get("by_size", {}).items()))
    line = (f"sim: {r['seeds_passed']} seeds passed of {r['seeds_run']} ({sizes}; "
            f"{r.get('reads', 0)} linearizable reads checked) in {r['seconds']:.1f}s")
    if r.get("waited") is not None:
        line += f" at idle priority beside the suite, {r['waited']:.1f}s of it waited for by the test"
    if r.get("failed"):
        line += f"; FAILED seeds: {r['failed'][:20]} (replay: SIM_SEED=<n> ./scripts/test.sh tests/sim)"
    terminalreporter.write_line(line)
