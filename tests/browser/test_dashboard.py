"""`invoke dashboard` in a real browser (Debian's chromium, headless, driven by selenium).

A 3-manager lab cluster with a 3-replica service -> `invoke dashboard` -> the page shows one
column per node, the leader, the Raft term (the agents' /metrics on) and the service at 3/3 ->
the leader's host loses power -> its column turns red within a few seconds, then another
manager leads, in a later term, and the service is back at 3/3 with no task left in the dead
column. Screenshots go to $SWARMKIT_TEST_ARTIFACTS (default .lab/test-artifacts/) as test
artifacts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.labkit import INVOKE, LAB_MARKS, REPO, invoke, operator_env, running_lab

pytestmark = LAB_MARKS
DOCKER = shutil.which("docker") or "/usr/bin/docker"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("SWARMKIT_TEST_ARTIFACTS") or REPO / ".lab" / "test-artifacts")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, lab_name):
    """(lab, env): 3 hosts, 3 managers, service `web` with 3 replicas."""
    tmp = tmp_path_factory.mktemp("browser")
    env = operator_env(tmp, DOCKER_CONFIG=str(tmp / "docker-config"))
    with running_lab(tmp, lab_name("browser"), 3) as lab:
        inv = lab.inventory_path
        doc = yaml.safe_load(inv.read_text())  # the agents' /metrics on: the view shows the Raft term
        doc["all"]["vars"]["swarmkit_metrics_port"] = 9323
        inv.write_text(yaml.safe_dump(doc))
        invoke(env, "bootstrap", "--managers", "3", inventory=inv)
        exports = invoke(env, "docker-env", inventory=inv).stdout
        denv = {**env, **dict(re.findall(r"^export (\w+)=(.*)$", exports, re.M))}
        r = subprocess.run([DOCKER, "service", "create", "--name", "web", "--replicas", "3", "--detach=false",
                            "swarmkit-py/busybox:latest", "sleep", "1000000"], env=denv, capture_output=True,
                           text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        yield lab, env


@pytest.fixture(scope="module")
def dashboard(cluster):
    lab, env = cluster
    p = subprocess.Popen([INVOKE, "dashboard", "--port", "0", "--inventory", str(lab.inventory_path)], cwd=REPO,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "dashboard: http" not in line:
            assert time.monotonic() < deadline and p.poll() is None, f"dashboard did not start: {line}"
            line = p.stdout.readline()
        yield re.search(r"(http://127\.0\.0\.1:\d+/)", line).group(1)
    finally:
        p.terminate()
        p.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), \
        "Debian's chromium and chromium-driver are needed: run ./scripts/setup.sh"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,560"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # a given driver: nothing downloaded
    yield d
    d.quit()


def columns(d) -> dict[str, dict]:
    """What the page shows now: node -> {status, leader, tasks}."""
    return d.execute_script("""
        const out = {};
        for (const c of document.querySelectorAll('.node')) {
          out[c.dataset.node] = {status: c.dataset.status, leader: !!c.querySelector('.leader'),
                                 tasks: [...c.querySelectorAll('.task')].map(t => t.textContent)};
        }
        return out;""")


def term(d) -> int | None:
    m = re.search(r"term (\d+)", d.find_element("id", "summary").text)
    return int(m.group(1)) if m else None


def replicas(d, service: str) -> str:
    return d.execute_script(
        "const r = document.querySelector(`tr[data-service='${arguments[0]}'] .replicas`);"
        "return r ? r.textContent : null;", service)


def wait(what, cond, timeout):
    deadline = time.monotonic() + timeout
    while not (v := cond()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)
    return v


def test_dashboard_shows_the_cluster_and_a_crash(cluster, dashboard, browser):
    lab, _ = cluster
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(dashboard)
    cols = wait("a column per node, one leader, web at 3/3",
                lambda: (c := columns(browser)) and sorted(c) == ["h1", "h2", "h3"]
                and sum(v["leader"] for v in c.values()) == 1 and replicas(browser, "web") == "3/3" and c, 60)
    assert all(v["status"] == "up" for v in cols.values()), cols
    first_term = wait("the Raft term in the header", lambda: term(browser), 10)
    assert sum(len(v["tasks"]) for v in cols.values()) == 3
    assert all(t.endswith(" running") for v in cols.values() for t in v["tasks"])
    browser.save_screenshot(str(ARTIFACTS / "dashboard-healthy.png"))

    leader = next(h for h, v in cols.items() if v["leader"])
    lab.crash(leader)
    t0 = time.monotonic()
    wait(f"{leader}'s column to turn red", lambda: columns(browser)[leader]["status"] == "down", 10)
    took = time.monotonic() - t0
    print(f"\n{leader} (leader) crashed: its column red after {took:.1f}s (load {os.getloadavg()[0]:.1f})")
    browser.save_screenshot(str(ARTIFACTS / "dashboard-crash.png"))

    def moved():
        c = columns(browser)
        return (c[leader]["status"] == "down" and not c[leader]["tasks"] and replicas(browser, "web") == "3/3"
                and any(v["leader"] for h, v in c.items() if h != leader))

    wait("a new leader and web back at 3/3 without the dead node", moved, 120)
    assert term(browser) > first_term, "a new leader was elected in a later term"
    print(f"new leader and 3/3 replicas shown {time.monotonic() - t0:.1f}s after the crash")
    browser.save_screenshot(str(ARTIFACTS / "dashboard-recovered.png"))
    print(f"screenshots: {ARTIFACTS}")
