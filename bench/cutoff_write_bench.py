"""A write in flight to a leader that gets cut off from the majority: how long until the client
hears, and until the same write succeeds through another manager (issue 10).

    python bench/cutoff_write_bench.py --lab-name NAME [--trials 10] [--out F] [--keep-lab]

Lab: 5 hosts, `invoke bootstrap --managers 3`, one service `cq` with 0 replicas (a write that
moves no task). Per trial, two clients, each timed from the moment the leader's host is
partitioned away from every other host (`Lab.partition`: the controller still reaches it):
- `sdk`: the service's version is read before the cut, and the update (a label) is POSTed to the
  cut-off leader right after it, so it is in flight while the leader still believes it leads:
  `sdk_error_s` is when that request returns (an error: it cannot commit), then the same update
  is re-read and retried through another manager until it succeeds (`sdk_ok_s`);
- `cli`: the same with the real `docker service update --label-add` (inspect, then update), sent
  to the cut-off leader right after the cut (`cli_error_s`), then to another manager
  (`cli_ok_s`).
Then the partition heals and the old leader must be back (a follower) before the next trial.
Prints one JSON line (medians, max, every sample, the error messages, load).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import emit, git_commit, source_id
from _lab_reschedule import LabCluster, wait

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "cq"
GIVE_UP_S = 60.0


def _log(msg: str) -> None:
    print(f"[cutoff_write_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _cli_env(lc: LabCluster, host: str, tmp: Path) -> dict[str, str]:
    from swarmkit_py.deploy import api
    from swarmkit_py.deploy.inventory import load

    inv = load(lc.inventory)
    return {**os.environ, "DOCKER_HOST": f"tcp://{api.api_url(inv.host(host))}", "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(api.bundle_dir(inv)), "DOCKER_CONFIG": str(tmp)}


def _cli_update(env: dict[str, str], value: str) -> subprocess.CompletedProcess:
    docker = shutil.which("docker") or "/usr/local/bin/docker"
    return subprocess.run([docker, "service", "update", "--detach", "--label-add", f"n={value}", SERVICE],
                          env=env, capture_output=True, text=True, timeout=GIVE_UP_S)


def _sdk_update(lc: LabCluster, host: str, value: str, svc: dict | None = None) -> None:
    """POST the update (label n=value) to `host`; from `svc` (read earlier) when given, else
    from a fresh inspect through `host`."""
    c = lc.client(host).api
    svc = svc or c.inspect_service(SERVICE)
    spec = dict(svc["Spec"], Labels={**(svc["Spec"].get("Labels") or {}), "n": value})
    c._raise_for_status(c._post_json(c._url("/services/{0}/update", svc["ID"]), data=spec,
                                     params={"version": svc["Version"]["Index"]}))


def _until_ok(fn, t0: float) -> float:
    while True:
        try:
            if fn():
                return time.monotonic() - t0
        except Exception:
            pass
        if time.monotonic() - t0 > GIVE_UP_S:
            raise TimeoutError("the write never succeeded through another manager")
        time.sleep(0.05)


def trial(lc: LabCluster, n: int, tmp: Path, kind: str) -> dict:
    lab = lc.lab
    wait(lc.all_ready, 120, "every node Ready, every manager Reachable, one leader")
    time.sleep(2)
    leader = lc.leader()
    others = sorted(m["Description"]["Hostname"] for m in lc.nodes()
                    if m.get("ManagerStatus") and m["Description"]["Hostname"] != leader)
    lc.drop_client(leader)
    api = lc.client(leader).api
    api.timeout = GIVE_UP_S  # the client must not give up first: the server's answer is measured
    svc = api.inspect_service(SERVICE)  # the version, and a connection open before the cut
    env_leader = _cli_env(lc, leader, tmp)
    env_other = _cli_env(lc, others[0], tmp)
    value = f"{kind}{n}"
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    lab.partition(leader)
    err_msg = ""
    try:
        if kind == "sdk":
            try:
                _sdk_update(lc, leader, value, svc)
                err_msg = "(succeeded?)"
            except Exception as e:  # noqa: BLE001 - the expected failure
                err_msg = str(e)[-300:]
            t_err = time.monotonic() - t0
            t_ok = _until_ok(lambda: _sdk_update(lc, others[0], value) or True, t0)
        else:
            r = _cli_update(env_leader, value)
            t_err = time.monotonic() - t0
            err_msg = (r.stderr or r.stdout).strip()[-300:] if r.returncode else "(succeeded?)"
            t_ok = _until_ok(lambda: _cli_update(env_other, value).returncode == 0, t0)
    finally:
        lab.heal()
        lc.drop_client(leader)
    return {"kind": kind, "leader": leader, "error_s": round(t_err, 3), "ok_s": round(t_ok, 3),
            "error": err_msg, "load1": round(load, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lab-name", default="cutoff")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep-lab", action="store_true")
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args()
    lc = LabCluster(a.lab_name, "seed")
    lc.managers = 3
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"cutoff-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    try:
        lab = lc.lab
        running = [h.name for h in lab.hosts() if h.state == "running"] if lab._config() else []
        if a.fresh or len(running) != 5:
            lab.down()
            lab.up(5, docker=True)
        lc.invoke("bootstrap", "--managers", "3")
        lc.invoke("docker-env")
        lc.nodes_via_any()
        c = lc.client(lc._via)
        try:
            c.api.inspect_service(SERVICE)
        except Exception:
            c.api.create_service({"ContainerSpec": {"Image": "swarmkit-py/busybox:latest", "Command": ["true"]}},
                                 name=SERVICE, mode={"Replicated": {"Replicas": 0}})
        for i in range(a.trials):
            for kind in ("sdk", "cli"):
                r = trial(lc, i, tmp, kind)
                rows.append(r)
                _log(f"trial {i + 1}/{a.trials} {kind}: {r}")
    finally:
        lc.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if not a.keep_lab:
            lc.lab.down()

    def summary(kind: str, key: str) -> dict:
        xs = [r[key] for r in rows if r["kind"] == kind]
        return {"median_s": round(statistics.median(xs), 3), "max_s": round(max(xs), 3), "samples": xs}

    emit({"bench": "cutoff-write", "trials": a.trials,
          **{f"{k}_{what}": summary(k, f"{what}_s") for k in ("sdk", "cli") for what in ("error", "ok")},
          "errors": sorted({r["error"][:160] for r in rows}),
          "load1_median": round(statistics.median(r["load1"] for r in rows), 2),
          "commit": git_commit(), **source_id()}, a.out)


if __name__ == "__main__":
    main()
