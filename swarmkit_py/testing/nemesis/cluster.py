"""The lab cluster the nemesis works on: built the way an operator builds one (`invoke
bootstrap`, `invoke docker-env` for the client bundle), then reached only through the public
Docker API of each manager and the lab's fault operations."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

from ...deploy import api
from ...deploy.inventory import load
from ...deploy.lab import Lab

REPO = Path(__file__).resolve().parents[3]
INVOKE = str(REPO / ".venv" / "bin" / "invoke")


class ClusterUnhealthy(RuntimeError):
    pass


class LabCluster:
    def __init__(self, lab: Lab, env: dict[str, str] | None = None, api_timeout: float = 5.0):
        self.lab = lab
        self.env = dict(env if env is not None else os.environ)
        self.api_timeout = api_timeout
        self._inv = None

    # -- the operator's commands ---------------------------------------------------------------
    def invoke(self, *args: str, timeout: float = 900) -> str:
        cmd = [INVOKE, *args, "--inventory", str(self.lab.inventory_path)]
        r = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}")
        return r.stdout

    def bootstrap(self, managers: int) -> None:
        """Install the agent everywhere and form the swarm with `managers` managers, then fetch
        the client bundle."""
        self.invoke("bootstrap", "--managers", str(managers))
        self.invoke("docker-env")
        self._inv = None

    # -- the Docker API ------------------------------------------------------------------------
    @property
    def inv(self):
        if self._inv is None:
            self._inv = load(self.lab.inventory_path)
        return self._inv

    def hosts(self) -> list[str]:
        return self.lab.host_names()

    def api(self, host: str, timeout: float | None = None):
        """A fresh low-level docker SDK client for `host`'s API (the caller closes it)."""
        c = api.client(self.inv.host(host), api.bundle_dir(self.inv, self.env), timeout=timeout or self.api_timeout)
        return c.api

    def _with(self, host: str, fn, timeout: float | None = None):
        a = self.api(host, timeout)
        try:
            return fn(a)
        finally:
            a.close()

    def nodes(self, via: str, timeout: float | None = None) -> list[dict]:
        return self._with(via, lambda a: a.nodes(), timeout)

    def managers(self) -> list[str]:
        """Hosts that are managers, as the first manager that answers sees it."""
        for h in random.sample(self.hosts(), len(self.hosts())):
            try:
                return sorted(n["Description"]["Hostname"] for n in self.nodes(h, 2) if n.get("ManagerStatus"))
            except Exception:  # noqa: BLE001 - down, frozen, partitioned: ask the next
                continue
        raise ClusterUnhealthy("no manager answers `docker node ls`")

    def leader(self, among: list[str] | None = None) -> str | None:
        """The leader as the first answering manager reports it (None if nobody knows one)."""
        for h in random.sample(among or self.hosts(), len(among or self.hosts())):
            try:
                for n in self.nodes(h, 2):
                    if (n.get("ManagerStatus") or {}).get("Leader"):
                        return n["Description"]["Hostname"]
                return None
            except Exception:  # noqa: BLE001
                continue
        return None

    def transfer_leader(self, to: str, via: str) -> str:
        """`POST /swarm/leader?to=` (what `invoke leader --to` calls); returns the new leader."""
        def call(a):
            node_id = next(n["ID"] for n in a.nodes() if n["Description"]["Hostname"] == to)
            r = a._result(a._post(a._url("/swarm/leader"), params={"to": node_id}), json=True)
            return r.get("Description", {}).get("Hostname") or r.get("ID")
        return self._with(via, call, 15)

    def health(self, managers: list[str]) -> list[str]:
        """What keeps the cluster from being healthy (empty when it is): every manager's host
        running, its API answering, every manager shown Reachable and one Leader from each."""
        problems = []
        for h in managers:
            state = next((x.state for x in self.lab.hosts() if x.name == h), "missing")
            if state != "running":
                problems.append(f"{h} is {state}")
                continue
            try:
                nodes = self.nodes(h, 3)
            except Exception as e:  # noqa: BLE001
                problems.append(f"{h}: {api.explain(e)[:120]}")
                continue
            st = {n["Description"]["Hostname"]: (n.get("ManagerStatus") or {}) for n in nodes}
            leaders = [m for m in managers if st.get(m, {}).get("Leader")]
            if len(leaders) != 1:
                problems.append(f"{h} sees leaders {leaders}")
            bad = [m for m in managers if st.get(m, {}).get("Reachability") != "reachable"]
            if bad:
                problems.append(f"{h} sees {', '.join(bad)} not reachable")
        return problems

    def wait_healthy(self, managers: list[str], timeout: float) -> float:
        t0 = time.monotonic()
        while True:
            problems = self.health(managers)
            if not problems:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise ClusterUnhealthy(f"not healthy {timeout:.0f}s after the faults were healed: "
                                       + "; ".join(problems))
            time.sleep(0.5)

    def retry(self, what: str, fn, hosts: list[str], timeout: float = 60.0) -> Any:
        """fn(api) on the hosts in turn until one succeeds."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            for h in hosts:
                try:
                    return self._with(h, fn)
                except Exception as e:  # noqa: BLE001
                    last = e
            time.sleep(0.5)
        raise ClusterUnhealthy(f"{what}: no manager did it in {timeout:.0f}s: {last}")
