"""The cluster as the operator sees it: which hosts are members, a Docker API client to a
live manager, and the `docker node ls`-style status.

Two channels, each for what it is good at: SSH for host-local facts and commands (is this
host in a swarm? run `swarmkit-py join`; issue a client bundle), and the Docker API (docker
SDK, TLS with the cluster's client bundle) for the cluster's own view and its guarded
operations, so every refusal is the cluster's rule, not a second copy of it here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shlex
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from . import api
from .inventory import Host, Inventory
from .runner import Runner
from .ssh import fan_out

JOINING_AS = "joining-as"
"""The role hint in a host's state directory (agent.state.JOINING_AS)."""

if TYPE_CHECKING:
    from rich.table import Table

NODE_STATE = "node.json"


REQUEST_TAKE_S = 15.0
"""How long a host's agent may take to pick up an `init`/`join` request (`Cluster.node_request`)
before the command runs itself: an agent still starting on a loaded host takes seconds."""
REQUEST_ANSWER_S = 120.0
"""How long an agent that took a request may take to answer (a join's own timeouts are 30 s)."""

BUNDLE_FILES = ("ca.pem", "cert.pem", "key.pem")
"""A client bundle's files (DOCKER_CERT_PATH)."""

CLIENT_CERT_AUTOLOCKED = 3
"""`swarmkit-py client-cert`'s exit status when auto-lock keeps the CA key sealed."""


def bundle_path() -> str:
    """A new path on a host for a bundle a command writes there and `take_bundle` removes."""
    return f"/tmp/skpy-bundle-{uuid.uuid4().hex}"


class ClusterError(RuntimeError):
    """An operation the cluster (or its current state) does not allow; phrased for the operator."""


API_POLL_S = 0.05
"""How often a bootstrap asks whether the founder's API answers (a refused connection costs
nothing) and whether the joined hosts are Ready: both on the way of every bootstrap, where
polling every 0.2 s added 0.1 s to each on average."""


def wait_for(what: str, cond, timeout: float, interval: float = 0.2):
    """Poll `cond` until truthy; on timeout say what was awaited and the last error seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # the cluster may still be settling
            last = e
        if time.monotonic() > deadline:
            extra = f" (last error: {api.explain(last)})" if last else ""
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


class Cluster:
    def __init__(self, inv: Inventory, runner: Runner, api_timeout: float = 5.0):
        self.inv = inv
        self.runner = runner
        self.api_timeout = api_timeout
        self.bundle = api.bundle_dir(inv)
        self._client = None
        self._entry: Host | None = None
        self.unlock_key: str | None = None
        """The auto-lock key when the operator gave one (--key-file): masked in the run log,
        sent to hosts only on a command's stdin (deploy/autolock.py)."""

    def use_unlock_key(self, key: str | None) -> None:
        if key:
            self.runner.log.redact(key)
            self.unlock_key = key

    # --- host-local facts over SSH --------------------------------------------------------

    def state_dir(self, h: Host) -> str:
        return str(h.vars["swarmkit_state_dir"])

    def cli(self, h: Host) -> str:
        return f"{h.vars['swarmkit_root']}/current/bin/swarmkit-py"

    def node_cmd(self, h: Host, args: str) -> str:
        """`swarmkit-py ARGS --config <the agent's config>`: a host-local command acting on
        the node's identity and state as the agent's config names them."""
        return f"{self.cli(h)} {args} --config {shlex.quote(h.vars['swarmkit_agent_config'])}"

    def expect_manager(self, h: Host) -> None:
        """Tell `h`'s agent, waiting to be enrolled, that a join as a manager is coming: it
        loads its manager half meanwhile (agent.state.role_hint, as `join --expect-role`
        does), instead of after the join, where that import (~0.4 s of CPU, 1.5 s on a
        loaded lab) was on the way to the manager being Reachable. A hint only: node.json,
        written by the join, decides, and serving the request removes it. Nothing is written
        on a host already in a swarm; a host that cannot be told is joined as before."""
        d = shlex.quote(self.state_dir(h))
        with contextlib.suppress(Exception):
            self.runner.conn(h).run(f"d={d}; [ -e \"$d/node.json\" ] || {{ umask 077; mkdir -p \"$d\" && "
                                    f"printf 'manager\\n' > \"$d/{JOINING_AS}\"; }}", changes=(self.state_dir(h),))

    def node_request(self, h: Host, req: dict, args: str):
        """`swarmkit-py ARGS` (`init` or `join`, as `node_cmd`), run by `h`'s agent when it
        waits for one (agent/enroll.py: the request `req` as a file in its state directory):
        on a fresh host the agent is running already, its modules imported, and a command
        process would cost the host another interpreter and its imports (~0.4 s of CPU). If
        no agent takes the request within REQUEST_TAKE_S (none running, or not waiting), it
        is taken back and the command runs itself, as before. The result (exit status,
        stdout, stderr) is the command's either way. One round trip. The request (a join
        token) is on the command line, as the command's own arguments were (masked in the
        run log), not on stdin: invoke feeds stdin a byte per 10 ms, 2 s for a join's; it
        is written 0600 in the state directory (0700)."""
        d = shlex.quote(self.state_dir(h))
        rid = uuid.uuid4().hex
        req = {**req, "id": rid}
        take = round(REQUEST_TAKE_S / 0.05)
        limit = take + round(REQUEST_ANSWER_S / 0.05)
        f = {k: f'"$d/request.{k}"' for k in ("json", "new", "back", "out", "err", "rc")}
        script = (
            f"d={d}; umask 077; mkdir -p \"$d\" && rm -f {f['rc']} {f['out']} {f['err']} || exit 1; "
            f"printf '%s\\n' {shlex.quote(json.dumps(req))} > {f['new']} && mv -f {f['new']} {f['json']} || exit 1; "
            f"i=0; while :; do "
            f"if [ -f {f['rc']} ]; then set -- $(cat {f['rc']}); [ \"${{2:-}}\" = {rid} ] && break; "
            f"rm -f {f['rc']} {f['out']} {f['err']}; fi; "  # another request's answer (its caller was killed)
            f"if [ $i -ge {take} ] && mv {f['json']} {f['back']} 2>/dev/null; then "
            f"rm -f {f['back']}; exec {self.node_cmd(h, args)}; fi; "
            f"if [ $i -ge {limit} ]; then echo \"{h.name}'s agent took the request but gave no answer in "
            f"{REQUEST_ANSWER_S:.0f} s (see its log)\" >&2; exit 1; fi; "
            "sleep 0.05; i=$((i + 1)); done; "
            f"cat {f['out']}; cat {f['err']} >&2; rm -f {f['out']} {f['err']} {f['rc']}; exit \"$1\"")
        return self.runner.conn(h).run(script, timeout=REQUEST_TAKE_S + REQUEST_ANSWER_S + 60)

    def membership(self, hosts: list[Host]) -> dict[str, dict | None | Exception]:
        """Each host's node state (its role and cluster), None if not in a swarm; read from the
        agent's state file so it works even before a release is installed (--check)."""

        def one(h: Host):
            r = self.runner.conn(h).run(f"cat {self.state_dir(h)}/{NODE_STATE} 2>/dev/null")
            return json.loads(r.stdout) if r.rc == 0 and r.stdout.strip() else None

        return dict(zip([h.name for h in hosts], fan_out(hosts, one, self.runner.forks), strict=True))

    def fetch_bundle(self, h: Host, timeout: float = 60.0) -> Path:
        """Issue a client bundle on manager `h` and copy it here (key 0600). The agent exports
        the CA key a moment after it starts leading, so this retries until the deadline."""
        remote = bundle_path()
        conn = self.runner.conn(h)
        cmd = self.node_cmd(h, f"client-cert --out {remote}")

        deadline = time.monotonic() + timeout
        while (r := conn.run(cmd)).rc != 0:
            if r.rc == CLIENT_CERT_AUTOLOCKED:  # no retry can help: say why at once
                raise ClusterError(f"{h.name} cannot issue a client bundle: {r.stderr.strip()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout:.0f}s waiting for a client bundle from {h.name} "
                                   f"({cmd}): {r.stderr.strip()[-300:]}")
            time.sleep(0.3)
        return self.take_bundle(h, remote)

    def take_bundle(self, h: Host, remote: str) -> Path:
        """Copy the bundle a command left in `remote` on `h` (`client-cert --out`, `init
        --client-bundle`) to this inventory's bundle directory (key 0600), and remove it from
        the host, whatever happens: one round trip (the three files read as base64, one a
        line, and the directory removed by the same command; it was four, on the founder's
        way to its API in a bootstrap). The key never reaches the run log."""
        conn = self.runner.conn(h)
        q = shlex.quote(remote)
        script = (f"ok=1; for f in {' '.join(BUNDLE_FILES)}; do base64 -w0 {q}/\"$f\" || {{ ok=0; break; }}; echo; done; "
                  f"rm -rf {q}; [ $ok = 1 ]")
        try:
            r = conn.run(script, log_output=False, changes=(f"{remote}/",))
        except Exception:
            conn.run(f"rm -rf {q}", changes=(f"{remote}/",))
            raise
        lines = r.stdout.split("\n")
        if r.rc != 0 or len(lines) < len(BUNDLE_FILES):
            raise RuntimeError(f"{h.name}: could not read the client bundle in {remote}: {r.stderr.strip()[-300:]}")
        tmp = self.bundle.with_name("bundle.new")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(0o700)  # the key is never readable by others here, not even before its chmod
        for f, line in zip(BUNDLE_FILES, lines, strict=False):
            fd = os.open(tmp / f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if f == "key.pem" else 0o644)
            with os.fdopen(fd, "wb") as out:
                out.write(base64.b64decode(line.strip()))
        (tmp / "key.pem").chmod(0o600)
        shutil.rmtree(self.bundle, ignore_errors=True)
        tmp.rename(self.bundle)
        self._client = None
        return self.bundle

    def adopt_bundle(self, h: Host, remote: str, timeout: float = 60.0):
        """Take the bundle `init --client-bundle` wrote on the founder `h` and wait until `h`'s
        Docker API answers with it: the client every later call uses (`client()`)."""
        self.take_bundle(h, remote)
        # polled every 50 ms: a closed port answers at once, and every join waits for this
        c = wait_for(f"the Docker API of {h.name} ({api.api_url(h)})", lambda: self._try(h), timeout,
                     interval=API_POLL_S)
        self.forget_client()
        self._client, self._entry = c, h
        return c

    # --- the Docker API ------------------------------------------------------------------

    def api_answers(self, h: Host) -> bool:
        """Whether `h`'s Docker API answers with our bundle now."""
        c = self._try(h)
        if c is not None:
            c.close()
        return c is not None

    def _try(self, h: Host):
        if not (self.bundle / "key.pem").exists():
            return None
        c = api.Client(h, self.bundle, timeout=self.api_timeout)
        try:
            c.api.inspect_swarm()
        except Exception:
            c.close()
            return None
        return c

    def candidates(self) -> list[Host]:
        pinned = self.inv.group("managers")
        names = pinned + [n for n in self.inv.hosts if n not in pinned]
        return [self.inv.hosts[n] for n in names]

    def client(self, prefer: Host | None = None, timeout: float = 30.0):
        """A client to a live manager: the preferred one, else any that answers with our bundle;
        with no bundle (or a stale one, from a cluster since rebuilt) a fresh one is issued on
        a manager found over SSH."""
        if self._client is not None and (prefer is None or prefer is self._entry):
            return self._client
        order = ([prefer] if prefer else []) + [h for h in self.candidates() if h is not prefer]
        found = self._first_answer(order, prefer) if (self.bundle / "key.pem").exists() else None
        if found is not None:
            self._entry, self._client = found
            return self._client
        states = self.membership(order)
        managers = [h for h in order if isinstance(states[h.name], dict) and states[h.name].get("role") == "manager"]
        if not managers:
            raise ClusterError(f"no host of {self.inv.path} is a swarm manager (run `invoke bootstrap`)")
        for h in managers:
            try:
                self.fetch_bundle(h, timeout=timeout)
            except ClusterError:
                continue
            c = wait_for(f"the Docker API of {h.name} ({api.api_url(h)})", lambda h=h: self._try(h), timeout)
            self._client, self._entry = c, h
            return c
        raise ClusterError("no manager could issue a client bundle: " + ", ".join(h.name for h in managers))

    def _first_answer(self, order: list[Host], prefer: Host | None):
        """(host, client) of the first manager whose API answers, asking all at once; the
        preferred one if it answers at all. It returns as soon as that is known: a powered-off
        host costs a connect timeout (its packets are dropped), and a read-only command during
        an incident must not wait for it (issue 13: `docker-env --host h2` took 5.3 s while
        another host was off). The dead hosts' attempts finish on daemon threads, which do not
        hold the process's exit."""
        answers: queue.Queue = queue.Queue()

        def attempt(h: Host) -> None:
            try:
                answers.put((h, self._try(h)))
            except Exception:  # noqa: BLE001 - an unreachable manager is just not an answer
                answers.put((h, None))

        for h in order:
            threading.Thread(target=attempt, args=(h,), name=f"api-try {h.name}", daemon=True).start()
        best = None
        waiting_for_prefer = prefer is not None
        for _ in order:
            h, c = answers.get()
            if h is prefer:
                waiting_for_prefer = False
                if c is not None:
                    if best is not None:
                        best[1].close()
                    return h, c
            elif c is not None:
                if best is None:
                    best = (h, c)
                else:  # a later answer than the one kept: not needed
                    c.close()
            if best is not None and not waiting_for_prefer:
                return best
        return best

    def join_token(self, role: str) -> str:
        """The current join token for `role` (worker|manager); masked in the run log from now
        on (it lets any host join the cluster)."""
        tokens = self.client().api.inspect_swarm()["JoinTokens"]
        token = tokens["Manager" if role == "manager" else "Worker"]
        self.runner.log.redact(token)
        return token

    def join_tokens(self) -> dict[str, str]:
        """Both join tokens (role -> token) from one answer of the cluster; masked in the run log."""
        tokens = self.client().api.inspect_swarm()["JoinTokens"]
        out = {"manager": tokens["Manager"], "worker": tokens["Worker"]}
        for t in out.values():
            self.runner.log.redact(t)
        return out

    @property
    def connected(self) -> bool:
        """A client to a manager is at hand (it answered when it was made)."""
        return self._client is not None

    def forget_client(self) -> None:
        """Drop the client (its manager stopped answering); the next `client()` finds another."""
        if self._client is not None:
            self._client.close()
        self._client = self._entry = None

    @property
    def entry(self) -> Host:
        self.client()
        return self._entry

    def nodes(self) -> list[dict]:
        return self.client().api.nodes()

    def node(self, name: str) -> dict:
        self.inv.host(name)  # a typo names the inventory, not just the cluster
        for n in self.nodes():
            if n.get("Description", {}).get("Hostname") == name:
                return n
        raise ClusterError(f"{name} is in {self.inv.path} but not in the swarm (run `invoke bootstrap`)")


# --- views ------------------------------------------------------------------------------------

def row(n: dict) -> dict:
    ms = n.get("ManagerStatus") or {}
    mstat = "Leader" if ms.get("Leader") else (ms.get("Reachability") or "").capitalize()
    return {"hostname": n.get("Description", {}).get("Hostname", "?"), "id": n.get("ID", "")[:12],
            "status": (n.get("Status", {}).get("State") or "").capitalize(),
            "availability": (n.get("Spec", {}).get("Availability") or "").capitalize(),
            "manager": mstat, "role": n.get("Spec", {}).get("Role", ""),
            "version": n.get("Description", {}).get("Engine", {}).get("EngineVersion", "")}


def node_table(nodes: list[dict]) -> Table:
    from rich.table import Table

    t = Table(title="nodes", title_justify="left")
    for col in ("HOSTNAME", "ID", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION"):
        t.add_column(col)
    for r in sorted((row(n) for n in nodes), key=lambda r: r["hostname"]):
        t.add_row(r["hostname"], r["id"], r["status"], r["availability"], r["manager"], r["version"])
    return t


def services_table(client) -> Table | str:
    try:
        services = client.api.services()
    except Exception as e:  # an agent build without the services API answers 404
        return f"services: not available from this cluster ({api.explain(e)})"
    from rich.table import Table

    t = Table(title="services", title_justify="left")
    for col in ("NAME", "MODE", "REPLICAS", "IMAGE"):
        t.add_column(col)
    for s in services:
        spec = s.get("Spec", {})
        mode = "replicated" if "Replicated" in spec.get("Mode", {}) else "global"
        try:
            tasks = client.api.tasks(filters={"service": s["ID"], "desired-state": "running"})
            running = sum(1 for x in tasks if x.get("Status", {}).get("State") == "running")
        except Exception:
            running = "?"
        want = spec.get("Mode", {}).get("Replicated", {}).get("Replicas", "-") if mode == "replicated" else "-"
        image = spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", "")
        t.add_row(spec.get("Name", s["ID"][:12]), mode, f"{running}/{want}", image)
    return t if services else "services: none"


def print_status(cl: Cluster) -> None:
    c = cl.client()
    console = cl.runner.console
    console.print(node_table(c.api.nodes()))
    console.print(services_table(c))
    console.print(f"(via {cl.entry.name}, {api.api_url(cl.entry)})")
