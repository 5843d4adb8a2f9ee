"""The routing mesh on a live lab: throughput and latency through the mesh vs straight to the
task, and how fast a dead task leaves the mesh's backends.

    invoke lab.up --hosts 4 --name L && invoke bootstrap --managers 1 --inventory .lab/L/hosts.yml
    python bench/mesh_bench.py --lab L [--requests 3000] [--seconds 20] [--concurrency 8]
                               [--rounds 3] [--deaths 5] [--out F]

Prints ONE JSON line. Set-up (made here, removed at the end): a service `meshbench` of one
replica of the busybox httpd on the last host (B), publishing 18080 -> 8080 through ingress.
The load generator (this script with --client, bounded by --requests and --seconds) runs in
the network namespace of a host C with no task of the service, and targets either
- mesh: host A's address:18080 (A has no task either: C -> A, A's DNAT -> VXLAN -> B), or
- direct: the task's own address on the ingress network (C -> VXLAN -> B, no NAT),
one new TCP connection per request (the mesh balances connections), reporting requests/s and
p50/p99 latency: the two paths alternate for --rounds rounds and each figure is the median. Then --deaths times: `docker kill` of the task's container on B; the clock
starts at the kill; A's nat table is polled (every 5 ms) until the DNAT rule to the task is
gone. Reported: kill issued (before the `docker kill` runs over SSH on B, so SSH's own
latency is in it) -> rule gone, and manager knowing (the first moment the manager's API, polled
every 10 ms over TLS, no longer shows the task running) -> rule gone on A.

Only lab namespaces this machine's lab made are touched; the service is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SERVICE = "meshbench"
PORT = 18080


# -- the load generator (runs inside a lab host's namespace) --------------------------------

async def _one(host: str, port: int) -> float:
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    if not data.startswith(b"HTTP/1.") or b" 200 " not in data.split(b"\r\n", 1)[0]:
        raise RuntimeError("bad answer")
    return time.perf_counter() - t0


async def load(host: str, port: int, requests: int, seconds: float, concurrency: int) -> dict:
    lat: list[float] = []
    errors = 0
    issued = 0
    deadline = time.monotonic() + seconds
    t0 = time.perf_counter()

    async def worker():
        nonlocal issued, errors
        while issued < requests and time.monotonic() < deadline:
            issued += 1
            try:
                lat.append(await asyncio.wait_for(_one(host, port), 5))
            except Exception:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    return {"requests": len(lat), "errors": errors, "seconds": round(elapsed, 3),
            "rps": round(len(lat) / elapsed, 1), "p50_ms": round(q[49] * 1000, 3),
            "p99_ms": round(q[98] * 1000, 3)}


# -- the orchestration (runs on the controller) ---------------------------------------------

def _median_run(runs: list[dict]) -> dict:
    """Per figure, the median over the rounds (errors summed), with every round's req/s."""
    out = {k: round(statistics.median(r[k] for r in runs), 3)
           for k in ("rps", "p50_ms", "p99_ms")}
    out["errors"] = sum(r["errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    out["rounds_rps"] = [r["rps"] for r in runs]
    return out


def sh(*args: str, env=None, check=True, input=None) -> str:
    p = subprocess.run(list(args), capture_output=True, text=True, env=env, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def docker_env(lab) -> dict:
    out = sh(str(REPO / ".venv/bin/invoke"), "docker-env", "--inventory", str(lab.inventory_path))
    env = dict(os.environ)
    for k, v in re.findall(r"^export (\w+)=(.*)$", out, re.M):
        env[k] = v.strip("'\"")
    env.setdefault("DOCKER_CONFIG", str(Path(env.get("SWARMKIT_DEPLOY_DIR", REPO / ".lab"))
                                         / "docker-config"))
    return env


def in_netns(lab, host: str, *args: str, check=True) -> str:
    return sh("nsenter", f"--net=/run/netns/{lab.names.netns(host)}", *args, check=check)


def task_of(env) -> dict | None:
    ids = sh("docker", "service", "ps", SERVICE, "-q", "--filter", "desired-state=running",
             env=env).split()
    for tid in ids:
        t = json.loads(sh("docker", "inspect", tid, env=env))[0]
        if t["Status"]["State"] == "running" and t.get("NetworksAttachments"):
            return t
    return None


def wait_task(env, not_id: str | None = None, timeout: float = 60) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        t = task_of(env)
        if t is not None and t["ID"] != not_id:
            return t
        time.sleep(0.2)
    raise TimeoutError("the bench service's task did not run")


def rule_present(lab, host: str, ip: str) -> bool:
    return f"--to-destination {ip}:8080" in in_netns(lab, host, "iptables", "-w", "-t", "nat", "-S")


def client(lab, host: str, target: str, port: int, a) -> dict:
    out = in_netns(lab, host, sys.executable, __file__, "--client", target, "--port", str(port),
                   "--requests", str(a.requests), "--seconds", str(a.seconds),
                   "--concurrency", str(a.concurrency))
    return json.loads(out.strip().splitlines()[-1])


class ManagerWatch(threading.Thread):
    """Polls the manager's API (SDK over TLS, every 10 ms) for the moment the task is no longer
    running there: when the manager knows (to within a poll)."""

    def __init__(self, api, task_id: str) -> None:
        super().__init__(daemon=True)
        self.api, self.task_id = api, task_id
        self.seen_at = float("nan")

    def run(self) -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            state = self.api.inspect_task(self.task_id)["Status"]["State"]
            if state != "running":
                self.seen_at = time.time()
                return
            time.sleep(0.01)


def sdk(env):
    import docker
    cert = env["DOCKER_CERT_PATH"]
    tls = docker.tls.TLSConfig(client_cert=(f"{cert}/cert.pem", f"{cert}/key.pem"),
                               ca_cert=f"{cert}/ca.pem", verify=True)
    client = docker.APIClient(base_url=env["DOCKER_HOST"], tls=tls, version="1.41")
    client.trust_env = False
    return client


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lab", default="lab")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--deaths", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="mesh/direct runs, alternated")
    ap.add_argument("--out")
    ap.add_argument("--client")
    ap.add_argument("--port", type=int, default=PORT)
    a = ap.parse_args()
    if a.client:
        print(json.dumps(asyncio.run(load(a.client, a.port, a.requests, a.seconds,
                                          a.concurrency))))
        return

    from _common import emit, git_commit

    from swarmkit_py.deploy.lab import Lab
    lab = Lab(a.lab)
    import yaml
    inv = yaml.safe_load(lab.inventory_path.read_text())["all"]["hosts"]
    hosts = sorted(inv)
    if len(hosts) < 3:
        raise SystemExit("the bench needs a lab of at least 3 hosts")
    addr = {h: v["ansible_host"] for h, v in inv.items()}
    entry, loadgen, backend = hosts[1], hosts[2], hosts[-1]
    env = docker_env(lab)
    api = sdk(env)
    sh("docker", "service", "rm", SERVICE, env=env, check=False)
    try:
        sh("docker", "service", "create", "--name", SERVICE, "--detach=false",
           "--constraint", f"node.hostname=={backend}", "--publish", f"{PORT}:8080",
           "swarmkit-py/busybox:latest", "sh", "-c",
           "mkdir -p /tmp/www && hostname > /tmp/www/index.html && "
           "exec httpd -f -p 8080 -h /tmp/www", env=env)
        task = wait_task(env)
        ip = task["NetworksAttachments"][0]["Addresses"][0].split("/")[0]
        while not rule_present(lab, entry, ip):
            time.sleep(0.05)
        # Alternate the two paths so a change in the machine's load hits both alike.
        runs: dict[str, list[dict]] = {"mesh": [], "direct": []}
        for _ in range(a.rounds):
            runs["mesh"].append(client(lab, loadgen, addr[entry], PORT, a))
            runs["direct"].append(client(lab, loadgen, ip, 8080, a))
        mesh, direct = (_median_run(runs[k]) for k in ("mesh", "direct"))

        kill_to_gone, known_to_gone = [], []
        for _ in range(a.deaths):
            task = wait_task(env)
            ip = task["NetworksAttachments"][0]["Addresses"][0].split("/")[0]
            while not rule_present(lab, entry, ip):
                time.sleep(0.02)
            cid = task["Status"]["ContainerStatus"]["ContainerID"]
            t_kill = time.time()
            watch = ManagerWatch(api, task["ID"])
            watch.start()
            sh(str(REPO / ".venv/bin/invoke"), "lab.ssh", "--name", a.lab, backend,
               f"docker kill {cid}")
            while rule_present(lab, entry, ip):
                time.sleep(0.005)
            t_gone = time.time()
            watch.join()
            kill_to_gone.append(t_gone - t_kill)
            known_to_gone.append(t_gone - watch.seen_at)
            wait_task(env, not_id=task["ID"])
        load_avg = os.getloadavg()
        ratio = mesh["rps"] / direct["rps"] if direct["rps"] else None
        emit({
            "bench": "mesh", "lab": a.lab, "entry": entry, "client": loadgen,
            "backend": backend, "concurrency": a.concurrency, "mesh": mesh, "direct": direct,
            "mesh_vs_direct_rps": round(ratio, 3) if ratio else None,
            "kill_issued_to_removed_s": {"samples": [round(x, 3) for x in kill_to_gone],
                                   "median": round(statistics.median(kill_to_gone), 3)},
            "manager_knows_to_removed_s": {
                "samples": [round(x, 3) for x in known_to_gone],
                "median": round(statistics.median(known_to_gone), 3),
                "max": round(max(known_to_gone), 3)},
            "loadavg": [round(x, 2) for x in load_avg], "commit": git_commit(),
        }, a.out)
    finally:
        sh("docker", "service", "rm", SERVICE, env=env, check=False)


if __name__ == "__main__":
    main()
