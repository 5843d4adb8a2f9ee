"""Agent memory (issue 13): a manager and a worker-only agent, at rest and with 50 tasks.

    python bench/agent_rss.py [--tasks 50] [--settle 10] [--out bench/rss.jsonl]
    python bench/agent_rss.py --imports          # where it goes: RSS after each import group
    python bench/agent_rss.py --lab NAME [--tasks 50]   # the agents of a bootstrapped lab

Real agent processes (``swarmkit-py agent``) on the machine's Docker engine: one manager
(drained, so it runs no task) and one worker joined to it. RSS (VmRSS from /proc, by the PID
this script started) of each after ``--settle`` seconds at rest, then after a service of
``--tasks`` replicas (``--image``, busybox ``sleep``) placed on the worker is all running and has settled.
Run it with the interpreter of a venv holding only the runtime dependencies (what the
wheelhouse installs on hosts: no paramiko, whose presence makes the Docker SDK import it, and
invoke with it), e.g. ``python -m venv /tmp/rt && /tmp/rt/bin/pip install . &&
/tmp/rt/bin/python bench/agent_rss.py``; the JSON line says which packages were present.

``--imports`` prints one JSON line of the RSS of a fresh interpreter after importing each
group an agent loads (the interpreter alone, the worker half, the manager half, the whole
agent), which is where most of an idle agent's memory goes, and ``steps``: what each library
adds when imported one after the other in one interpreter (``STEPS``).

``--lab NAME`` measures the agents of a lab that `invoke bootstrap` has made a swarm (`invoke
lab.up --name NAME`, then `invoke bootstrap --inventory .lab/NAME/hosts.yml`): the real path,
with the release as the toolkit installs it and each node joined by its own waiting agent.
Every host's agent at rest, by role, then a service of ``--tasks`` replicas placed on the last
worker, all running and settled; the service is removed at the end. ``--publish PORT`` first
runs one replica on a manager publishing PORT through the routing mesh, as the README's demo
does: every node then takes part in the ingress overlay (its links, its VIP rules), which is
the state a worker of such a swarm is at rest in.

Each process's RSS is also split by mapping (``*_smaps``: the heap, thread stacks, the largest
shared objects) and its thread count.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, git_commit  # noqa: E402
from scale_bench import proc_rss_mb  # noqa: E402


def smaps(pid: int, top: int = 8) -> dict:
    """Where a process's RSS is (/proc/PID/smaps): the Python heap (anonymous memory and
    [heap]: objects, code, pydantic-core's validators, OpenSSL's tables, malloc arenas of
    threads), thread stacks, and the largest shared objects (pages of them touched)."""
    import collections
    import re

    rss: collections.Counter = collections.Counter()
    cur = "anon"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                path = parts[5] if len(parts) > 5 else ""
                cur = (os.path.basename(path).split(".")[0] if path.startswith("/")
                       else "anon" if path in ("", "[heap]") else path.strip("[]"))
            elif parts[0] == "Rss:":
                rss[cur] += int(parts[1])
    out = {k: round(v / 1024, 1) for k, v in rss.most_common(top)}
    out["other"] = round(sum(v for k, v in rss.items() if k not in out) / 1024, 1)
    out["threads"] = len(os.listdir(f"/proc/{pid}/task"))
    return out

GROUPS = {
    "interpreter": "",
    "worker half (session, reconcile, executor, network plane)": (
        "import swarmkit_py.worker.session, swarmkit_py.worker.reconcile, "
        "swarmkit_py.worker.executor, swarmkit_py.worker.network"),
    "manager half (manager, Docker API)": "import swarmkit_py.manager.manager, swarmkit_py.api",
    "swarmkit_py.agent.agent (what `swarmkit-py agent` imports)": "import swarmkit_py.agent.agent",
}


STEPS = [
    ("asyncio, logging, ssl (OpenSSL)", "asyncio,logging,concurrent.futures,json,ssl"),
    ("msgpack, yaml (dnslib: on the first DNS query)", "msgpack,yaml"),
    ("pydantic", "pydantic,pydantic.main"),
    ("the agent's config (pydantic models)", "swarmkit_py.agent.config"),
    ("the store's models (pydantic classes, built on first use)", "swarmkit_py.store.objects"),
    ("the engine client (http.client; until 4d47989: the Docker SDK, 7.4 MB)",
     "swarmkit_py.engine"),
    ("swarmkit-py's worker side (agent module)", "swarmkit_py.agent.agent"),
    ("cryptography (x509, keys: a manager's CA, Raft keyring)",
     "cryptography.x509,cryptography.hazmat.primitives.asymmetric.ec,"
     "cryptography.hazmat.primitives.serialization"),
    ("aiohttp (a manager's API)", "aiohttp,aiohttp.web"),
    ("the manager half", "swarmkit_py.manager.manager,swarmkit_py.api"),
]
"""Imported one after the other in one interpreter: each step's RSS is what it adds to those
before it (shared dependencies count where they are first loaded). Everything up to the worker
side is what a worker-only agent loads; `cryptography` comes with the manager half only
(ca/sslfacts.py). No agent loads the Docker SDK (swarmkit_py/engine.py)."""


def _steps() -> list[dict]:
    code = ("import importlib, json, sys\n"
            "def rss():\n"
            "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')) / 1024\n"
            f"steps = {STEPS!r}\n"
            "out = [{'step': 'interpreter', 'rss_mb': rss(), 'modules': len(sys.modules)}]\n"
            "for name, mods in steps:\n"
            "    for m in mods.split(','):\n"
            "        importlib.import_module(m)\n"
            "    out.append({'step': name, 'rss_mb': rss(), 'modules': len(sys.modules)})\n"
            "print(json.dumps(out))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=Path(__file__).resolve().parents[1])
    rows = json.loads(r.stdout)
    prev = 0.0
    for row in rows:
        row["adds_mb"] = round(row["rss_mb"] - prev, 1)
        prev = row["rss_mb"]
        row["rss_mb"] = round(row["rss_mb"], 1)
    return rows


def imports() -> dict:
    out = {}
    for name, stmt in GROUPS.items():
        # VmRSS, not ru_maxrss: Linux carries the high-water mark across exec (from this process)
        code = (f"{stmt}\nimport sys\n"
                "rss = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:'))\n"
                "print(rss / 1024, len(sys.modules))")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[1])
        rss, mods = r.stdout.split()
        out[name] = {"rss_mb": round(float(rss), 1), "modules": int(mods)}
    return {"bench": "agent_import_rss", "commit": git_commit(), "imports": out, "steps": _steps()}


def measure(args) -> dict:
    from swarmkit_py.testing.agents import AgentCluster

    out: dict = {"bench": "agent_rss", "tasks": args.tasks, "commit": git_commit(),
                 "paramiko_installed": importlib.util.find_spec("paramiko") is not None,
                 "load1_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as workdir:
        c = AgentCluster(workdir)
        svc = None
        try:
            m = c.first_manager()
            w = c.ready_worker("w1", m)
            sdk = c.sdk(m)
            for n in sdk.nodes.list():
                if n.attrs["Spec"]["Role"] == "manager":
                    n.update({**n.attrs["Spec"], "Availability": "drain"})
            time.sleep(args.settle)
            out["manager_rest_mb"] = round(proc_rss_mb(m.proc.pid), 1)
            out["worker_rest_mb"] = round(proc_rss_mb(w.proc.pid), 1)
            out["worker_rest_smaps"] = smaps(w.proc.pid)
            svc = sdk.services.create(args.image, ["sleep", "1d"], name="rss",
                                      mode={"Replicated": {"Replicas": args.tasks}})
            c.wait_for(lambda: sum(t["Status"]["State"] == "running" for t in svc.tasks()) >= args.tasks,
                       300, f"{args.tasks} tasks running", interval=1.0)
            time.sleep(args.settle)
            out["manager_tasks_mb"] = round(proc_rss_mb(m.proc.pid), 1)
            out["worker_tasks_mb"] = round(proc_rss_mb(w.proc.pid), 1)
            out["worker_tasks_smaps"] = smaps(w.proc.pid)
            out["manager_tasks_smaps"] = smaps(m.proc.pid)
            svc.remove()
        finally:
            c.stop_all()
            try:
                import docker

                engine = docker.from_env()
                c.remove_task_containers(engine)
            except Exception:  # noqa: BLE001 - best effort: the engine may be gone
                pass
    out["load1_end"] = round(os.getloadavg()[0], 2)
    return out


def _lab_agents(lab) -> dict[str, int]:
    """host -> PID of its `swarmkit-py agent` process (from the host's cgroup)."""
    from swarmkit_py.deploy.lab import cgroups

    out = {}
    for h in lab.hosts():
        for pid in cgroups.procs(lab.host_cgroup(h.name)):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"agent" in cmd and any(c.endswith(b"bin/swarmkit-py") for c in cmd):
                out[h.name] = pid
    return out


def measure_lab(args) -> dict:
    from mesh_bench import docker_env

    from swarmkit_py.deploy.lab import Lab

    lab = Lab(args.lab)
    env = docker_env(lab)

    def docker(*a: str) -> str:
        return subprocess.run(["docker", *a], capture_output=True, text=True, check=True, env=env).stdout

    def wait_running(name: str, n: int) -> None:
        deadline = time.monotonic() + 300
        while f"{name} {n}/{n}" not in docker("service", "ls", "--format", "{{.Name}} {{.Replicas}}").splitlines():
            if time.monotonic() > deadline:
                raise SystemExit(f"service {name}: {n} tasks not running within 300 s")
            time.sleep(1.0)

    roles = {}
    for line in docker("node", "ls", "--format", "{{json .}}").splitlines():
        n = json.loads(line)
        roles[n["Hostname"]] = "manager" if n.get("ManagerStatus") else "worker"
    agents = _lab_agents(lab)
    workers = sorted(h for h in agents if roles.get(h) == "worker")
    if not workers:
        raise SystemExit(f"lab {args.lab}: no worker among {roles}; bootstrap it with fewer managers than hosts")
    w = workers[-1]

    def rss_by_host() -> dict[str, float]:
        return {h: round(proc_rss_mb(pid), 1) for h, pid in sorted(agents.items())}

    out: dict = {"bench": "agent_rss_lab", "lab": args.lab, "tasks": args.tasks, "commit": git_commit(),
                 "roles": {h: roles.get(h) for h in sorted(agents)}, "published": args.publish,
                 "load1_start": round(os.getloadavg()[0], 2)}
    services = []
    try:
        if args.publish:
            services.append("rss-mesh")
            docker("service", "create", "--detach", "--name", "rss-mesh", "--publish", f"{args.publish}:8080",
                   "--constraint", "node.role==manager", args.image, "httpd", "-f", "-p", "8080")
            wait_running("rss-mesh", 1)
        time.sleep(args.settle)
        rest = rss_by_host()
        out["rest_mb"] = rest
        out["manager_rest_max_mb"] = max(v for h, v in rest.items() if roles.get(h) == "manager")
        out["worker_rest_max_mb"] = max(v for h, v in rest.items() if roles.get(h) == "worker")
        out["worker_rest_smaps"] = smaps(agents[w])
        services.append("rss")
        docker("service", "create", "--detach", "--name", "rss", "--replicas", str(args.tasks),
               "--constraint", f"node.hostname=={w}", args.image, "sleep", "1d")
        wait_running("rss", args.tasks)
        time.sleep(args.settle)
        out["tasks_on"] = w
        out["with_tasks_mb"] = rss_by_host()
        out["worker_tasks_mb"] = out["with_tasks_mb"][w]
        out["worker_tasks_smaps"] = smaps(agents[w])
    finally:
        if services:
            docker("service", "rm", *services)
    out["load1_end"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--image", default="swarmkit-py/busybox:latest",
                    help="a local image (nothing is pulled here): the tests' busybox by default")
    ap.add_argument("--imports", action="store_true")
    ap.add_argument("--lab", metavar="NAME", help="measure the agents of this bootstrapped lab")
    ap.add_argument("--publish", type=int, metavar="PORT",
                    help="with --lab: first publish PORT through the routing mesh (one replica on a manager)")
    ap.add_argument("--out")
    args = ap.parse_args()
    emit(imports() if args.imports else measure_lab(args) if args.lab else measure(args), args.out)


if __name__ == "__main__":
    main()
