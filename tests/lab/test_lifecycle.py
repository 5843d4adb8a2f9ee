"""The cluster's life cycle on a real 6-host lab, through the real `invoke` commands.

test_crash_replace_upgrade: bootstrap 3 managers on h1..h4 -> `scale --add h5` -> a 3-replica
service -> the leader's host crashes -> a new leader, replicas back to 3 elsewhere -> manager
token rotated -> `replace` the crashed host with h6 -> `upgrade` to a second build while a
sampler reads the service's running replicas every 200 ms -> every host runs the new release ->
`verify` green -> a second `bootstrap` changes nothing.

test_quorum_loss_recover_reset (continues on the same cluster): promote to 5 managers, crash 3
-> no leader -> `recover` -> the most up-to-date survivor leads, the other re-joins, the
service is kept and the cluster takes writes again -> `reset --yes` removes everything.

Figures (printed): failover time, wall time of the rolling upgrade, min replicas during it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from swarmkit_py.deploy import api, wheelhouse
from swarmkit_py.deploy.lab import Lab

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, bridge, iptables, cgroups)"),
    pytest.mark.timeout(900),
]

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(REPO / ".venv" / "bin" / "invoke")
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
IMAGE = "swarmkit-py/busybox:latest"
SUFFIX = "up2"
STATE: dict = {}


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lab_name):
    tmp = tmp_path_factory.mktemp("life")
    lab = Lab(lab_name("life"), state_dir=tmp / "lab", inventory_path=tmp / "hosts.yml")
    try:
        lab.up(6, docker=True)
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    e = {**os.environ, "SWARMKIT_BUILD_REF": head, "COLUMNS": "200",
         "SWARMKIT_DEPLOY_DIR": str(tmp_path_factory.mktemp("operator"))}
    e.pop("SWARMKIT_RELEASE_SUFFIX", None)
    return e


def invoke(env, *args, inventory=None, check=True, timeout=600) -> subprocess.CompletedProcess:
    cmd = [INVOKE, *args] + (["--inventory", str(inventory)] if inventory else [])
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    r.took = time.monotonic() - t0
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}")
    return r


def changed(out: str) -> int:
    return int(re.findall(r"^changed=(\d+) failed=", out, re.M)[-1])


def sub_inventory(lab: Lab, path: Path, hosts: list[str], managers: list[str] | None = None) -> Path:
    """The lab's inventory cut down to `hosts` (what an operator edits after a replace)."""
    doc = yaml.safe_load(lab.inventory_path.read_text())
    doc["all"]["hosts"] = {h: v for h, v in doc["all"]["hosts"].items() if h in hosts}
    if managers:
        doc["all"]["children"] = {"managers": {"hosts": {h: None for h in managers}}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def docker(env, inv, *args, check=True) -> str:
    exports = invoke(env, "docker-env", inventory=inv).stdout
    denv = {**env, "DOCKER_CONFIG": str(Path(env["SWARMKIT_DEPLOY_DIR"]) / "docker-config")}
    for k, v in re.findall(r"^export (\w+)=(.*)$", exports, re.M):
        denv[k] = v
    r = subprocess.run([DOCKER, *args], env=denv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 or not check, f"docker {' '.join(args)}: {r.stderr}"
    return r.stdout


def nodes(env, inv) -> dict[str, list[str]]:
    out = docker(env, inv, "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}")
    return {p[0]: p[1:] for p in (line.split() for line in out.splitlines())}


class Replicas:
    """Reads the service's running tasks through any answering manager, every `period` s."""

    def __init__(self, env, inv: Path, service: str, period: float = 0.2):
        from unittest import mock

        from swarmkit_py.deploy.inventory import load

        self.inv = load(inv)
        with mock.patch.dict(os.environ, {"SWARMKIT_DEPLOY_DIR": env["SWARMKIT_DEPLOY_DIR"]}):
            self.bundle = api.bundle_dir(self.inv)
        self.service, self.period = service, period
        self.samples: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._clients: dict[str, object] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self, managers: list[str]) -> int | None:
        for m in managers:
            try:
                c = self._clients.get(m) or api.client(self.inv.hosts[m], self.bundle, timeout=1.5)
                self._clients[m] = c
                tasks = c.api.tasks(filters={"service": self.service, "desired-state": "running"})
                return sum(1 for t in tasks if t["Status"]["State"] == "running")
            except Exception:
                self._clients.pop(m, None)
        return None

    def _run(self):
        while not self._stop.is_set():
            t = time.monotonic()
            self.samples.append((t, self.count(STATE["managers"])))
            self._stop.wait(max(0.0, self.period - (time.monotonic() - t)))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._thread.join(10)


def wait(what, cond, timeout=60.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)


def running_on(env, inv, service="web") -> list[str]:
    out = docker(env, inv, "service", "ps", service, "--filter", "desired-state=running",
                 "--format", "{{.Node}} {{.CurrentState}}")
    return [line.split()[0] for line in out.splitlines() if " Running" in f" {line}"]


def test_crash_replace_upgrade(lab, env, tmp_path):
    inv4 = sub_inventory(lab, tmp_path / "hosts4.yml", ["h1", "h2", "h3", "h4"])
    inv5 = sub_inventory(lab, tmp_path / "hosts5.yml", ["h1", "h2", "h3", "h4", "h5"])
    t0 = time.monotonic()
    invoke(env, "bootstrap", "--managers", "3", inventory=inv4)
    boot = time.monotonic() - t0
    sc = invoke(env, "scale", "--add", "h5", inventory=inv5)
    assert "joined as a worker" in sc.stdout, sc.stdout
    assert changed(invoke(env, "scale", "--add", "h5", inventory=inv5).stdout) == 0
    rows = nodes(env, inv5)
    assert sorted(rows) == ["h1", "h2", "h3", "h4", "h5"] and all(r[0] == "Ready" for r in rows.values()), rows

    docker(env, inv5, "service", "create", "-d", "--name", "web", "--replicas", "3", "--stop-grace-period", "2s",
           IMAGE, "sleep", "3600")
    wait("3 running replicas", lambda: len(running_on(env, inv5)) == 3, 60)

    leader = next(h for h, r in rows.items() if r[2:] == ["Leader"])
    survivors = [h for h in ("h1", "h2", "h3", "h4", "h5") if h != leader]
    inv_s = sub_inventory(lab, tmp_path / "hosts-s.yml", survivors)
    t_crash = time.monotonic()
    lab.crash(leader)
    wait("a new leader", lambda: any(r[2:] == ["Leader"] for h, r in _try_nodes(env, inv_s).items() if h != leader), 60)
    t_leader = time.monotonic() - t_crash
    wait("3 replicas running on live hosts", lambda: _moved(running_on(env, inv_s), leader), 90)
    t_tasks = time.monotonic() - t_crash

    old_tok = invoke(env, "join-token", "manager", inventory=inv_s).stdout.strip()
    new_tok = invoke(env, "join-token", "manager", "--rotate", inventory=inv_s).stdout.strip()
    assert new_tok.startswith("SWMTKN-") and new_tok != old_tok

    inv6 = sub_inventory(lab, tmp_path / "hosts6.yml", ["h1", "h2", "h3", "h4", "h5", "h6"])
    rep = invoke(env, "replace", leader, "h6", inventory=inv6)
    assert "join first:   4 managers, quorum 3, reachable 3 -> keeps quorum" in rep.stdout, rep.stdout
    rows = nodes(env, inv_s)
    assert leader not in rows and rows["h6"][0] == "Ready" and rows["h6"][2] in ("Reachable", "Leader"), rows
    managers = sorted(h for h, r in rows.items() if len(r) > 2)
    assert len(managers) == 3, rows
    again = invoke(env, "replace", leader, "h6", inventory=inv6)
    assert "nothing to do" in again.stdout

    after = survivors + ["h6"]
    inv = sub_inventory(lab, tmp_path / "hosts-after.yml", after, managers)
    STATE.update(inv=inv, managers=managers, hosts=after, leader_crashed=leader)
    env2 = {**env, "SWARMKIT_RELEASE_SUFFIX": SUFFIX}
    new_version = wheelhouse.source_version().split("-" + SUFFIX)[0] + "-" + SUFFIX
    t0 = time.monotonic()
    with Replicas(env, inv, "web") as rs:
        up = invoke(env2, "upgrade", "--batch", "1", inventory=inv)
        took = time.monotonic() - t0
        time.sleep(1)
    seen = [n for _, n in rs.samples if n is not None]
    blind = sum(1 for _, n in rs.samples if n is None)
    assert f"upgrade to {new_version}: 5 host(s) upgraded" in up.stdout, up.stdout
    for h in after:
        rc, out, _ = lab.ssh(h, "readlink /opt/swarmkit-py/current; tr '\\0' ' ' < /proc/$(cat /run/swarmkit-py/agent.pid)/cmdline")
        assert out.count(new_version) == 2, (h, out)
    assert len(running_on(env, inv)) == 3
    gap = re.search(r"without a leader ([\d.]+)s", up.stdout)
    print(f"\nbootstrap 3 managers on 4 hosts {boot:.1f}s; leader {leader} crashed: new leader after {t_leader:.1f}s, "
          f"3 replicas on live hosts after {t_tasks:.1f}s")
    print(f"rolling upgrade of 5 hosts (drain, batch 1): {took:.1f}s wall; replicas min {min(seen)} max {max(seen)} over "
          f"{len(seen)} samples ({blind} with no manager answering); leader handover {gap.group(1) if gap else '?'}s")
    STATE["upgrade"] = {"seconds": took, "min": min(seen), "samples": len(seen), "blind": blind}
    assert min(seen) >= 2, rs.samples  # never worse than one replica down (figures above say how often)

    v = invoke(env2, "verify", inventory=inv)
    assert re.search(r"\b\d+ passed\b", v.stdout) and "failed" not in v.stdout, v.stdout
    assert changed(invoke(env2, "bootstrap", "--managers", "3", inventory=inv).stdout) == 0


def _moved(on: list[str], dead: str) -> bool:
    return len(on) == 3 and dead not in on


def _try_nodes(env, inv) -> dict:
    try:
        return nodes(env, inv)
    except (AssertionError, subprocess.SubprocessError):
        return {}


def test_quorum_loss_recover_reset(lab, env, tmp_path):
    assert STATE.get("inv"), "needs the cluster of test_crash_replace_upgrade"
    inv, managers, hosts = STATE["inv"], STATE["managers"], STATE["hosts"]
    env2 = {**env, "SWARMKIT_RELEASE_SUFFIX": SUFFIX}
    workers = [h for h in hosts if h not in managers]
    for h in workers:  # 5 managers, so losing 3 leaves 2 survivors to choose from
        invoke(env2, "promote", h, inventory=inv)
    lost = managers  # the original 3: the leader among them
    for h in lost:
        lab.crash(h)
    live = sub_inventory(lab, tmp_path / "live.yml", workers)
    wait("no leader", lambda: not any(r[2:] == ["Leader"] for r in _try_nodes(env, live).values()), 30)
    t0 = time.monotonic()
    rec = invoke(env2, "recover", inventory=inv, check=False)
    took = time.monotonic() - t0
    assert rec.returncode in (0, 4), rec.stdout + rec.stderr  # 4: the crashed hosts were unreachable
    assert "most up-to-date:" in rec.stdout and "re-joined" in rec.stdout, rec.stdout
    rows = nodes(env, live)
    assert sorted(r[2] for h, r in rows.items() if h in workers) == ["Leader", "Reachable"], rows
    assert "web" in docker(env, live, "service", "ls", "--format", "{{.Name}}")
    docker(env, live, "service", "scale", "-d", "web=2")
    wait("web scaled to 2 on the survivors", lambda: len(running_on(env, live)) == 2, 60)
    print(f"\nquorum loss (3 of 5 managers crashed): recover took {took:.1f}s; writes accepted again")

    refused = invoke(env2, "reset", inventory=live, check=False)
    assert refused.returncode != 0 and "--yes" in refused.stdout + refused.stderr
    invoke(env2, "reset", "--yes", inventory=live)
    for h in workers:
        rc, out, _ = lab.ssh(h, "ls -d /opt/swarmkit-py /etc/swarmkit-py /var/lib/swarmkit-py 2>/dev/null; "
                                "docker ps -q --filter label=com.docker.swarm.task.id | wc -l; pgrep -f '[s]warmkit-py agent' | wc -l")
        assert out.split() == ["0", "0"], (h, out)
