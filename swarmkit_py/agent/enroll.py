"""`init` and `join` of this host: what `swarmkit-py init` / `join` run, and what a waiting
agent runs itself when the deploy toolkit hands it the same request as a file.

Why the agent: on a bootstrap's path every fresh host's agent is already running, waiting for
node.json, its interpreter started and its modules imported. A `swarmkit-py join` process
costs the host another interpreter and ~0.4 s of CPU to import what the agent has imported
already (pydantic, yaml, asyncio, ssl); seven of them (`init` among them, on the path of every
join) on the lab's two cores (issue 13). Both paths run the functions below, so their checks,
messages and exit statuses are the same.

The request, in the agent's state directory (0700, root's):

    request.json   {"op": "init", "client_bundle": DIR|null} or {"op": "join", "manager": ADDR,
                   "token": T, "role": "manager"|"worker"|null}, and an "id"; written 0600 and
                   renamed into place
    request.taken  the agent takes request.json by renaming it (so exactly one of the agent and
                   the caller's fallback acts on it: the caller takes it back by renaming it too),
                   reads it and removes it
    request.out, request.err, request.rc    the answer: what the command would have printed on
                   stdout and stderr, and its exit status with the request's id ("0 ID");
                   request.rc is written last

The agent looks for a request only while it waits for node.json (a host not in a swarm); on a
member, a request stays where it is until the caller takes it back. This module is imported by
the CLI and the agent only; it imports the heavy parts (cryptography, the join client) where
they are used.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .config import AgentConfig

REQUEST = "request.json"
TAKEN = "request.taken"
ANSWER_OUT, ANSWER_ERR, ANSWER_RC = "request.out", "request.err", "request.rc"
FILES = (REQUEST, TAKEN, ANSWER_OUT, ANSWER_ERR, ANSWER_RC)
STALE_S = 60.0
"""A request older than this is dropped, not run: its caller gave up on it long ago (it takes
a request back after `deploy.cluster.REQUEST_TAKE_S`, 15 s), or was killed before it could."""


# --- the commands ------------------------------------------------------------------------

def init_node(cfg: AgentConfig, client_bundle: str | None, out: TextIO, err: TextIO) -> int:
    """`swarmkit-py init [--client-bundle DIR]` for `cfg`'s node; returns the exit status."""
    addr = cfg.advertise_addr or cfg.listen_addr
    if addr.startswith("0.0.0.0"):
        print("init: --advertise-addr is required (the address other nodes reach this one at)", file=err)
        return 2
    from .identity import init_state

    bundle = Path(client_bundle) if client_bundle else None
    try:
        st = init_state(cfg.state_dir, addr, cfg.hostname, client_bundle=bundle)
    except FileExistsError:
        print(f"init: --client-bundle {bundle} exists; give a directory that does not", file=err)
        return 1
    print(f"Swarm initialized: current node ({st.node_id}) is now a manager.", file=out)
    if bundle is not None:
        print(f"wrote ca.pem, cert.pem, key.pem to {bundle}", file=out)
    print("Start the agent (swarmkit-py agent) to bring the swarm up; then `docker swarm join-token worker` "
          "on a manager prints the join command.", file=out)
    return 0


def join_refusal(cfg: AgentConfig) -> tuple[int, str] | None:
    """Why `join` cannot start on `cfg`'s node (exit status, message), None if it can."""
    from .state import LocalNode

    if not cfg.advertise_addr:
        return 2, "join: --advertise-addr is required (the address other nodes reach this one at)"
    if LocalNode.load(cfg.state_dir) is not None:
        return 1, ("join: This node is already part of a swarm. Use `swarmkit-py leave` to leave this swarm "
                   "and join another one.")
    return None


async def join_node(cfg: AgentConfig, manager: str, token: str, out: TextIO, err: TextIO,
                    key_in_child: bool = False) -> int:
    """The join itself, after `join_refusal` said none: the certificate from `manager` with
    `token`, then node.json; returns the exit status. `key_in_child`: the node's key and CSR
    are made by a child process (ca/newkey.py), so this one never loads `cryptography`."""
    from ..ca.newkey import in_child
    from ..worker.join import join
    from .identity import new_raft_id
    from .state import LocalNode, certs_dir

    hostname = cfg.hostname or socket.gethostname()
    try:
        res = await join(manager, token, certs_dir(cfg.state_dir), hostname, cfg.advertise_addr,
                         key_and_csr=in_child if key_in_child else None)
    except Exception as e:  # the join client's errors are written for operators
        print(f"join: {e}", file=err)
        return 1
    role = str(getattr(res.role, "value", res.role))
    managers = [m["addr"] if isinstance(m, dict) else m.addr for m in res.managers] or [manager]
    LocalNode(node_id=res.node_id, cluster_id=res.cluster_id, role=role,
              raft_id=new_raft_id() if role == "manager" else 0, managers=managers).save(cfg.state_dir)
    print(f"This node joined a swarm as a {role}.", file=out)
    return 0


def import_for(op: str, role: str | None = None) -> None:
    """Import what `op` imports where it runs (the agent does this in a thread before it
    starts another import thread: two threads never import the same modules at once). A join
    that will not make a manager (`key_in_child`) imports no `cryptography`."""
    import importlib

    names = ["swarmkit_py.agent.identity"]
    if op == "init":
        names += ["swarmkit_py.ca.authority", "swarmkit_py.ca.certs", "swarmkit_py.ca.bundle"]
    else:
        names += ["swarmkit_py.worker.join", "swarmkit_py.ca.tokens", "swarmkit_py.ca.sslfacts",
                  "swarmkit_py.ca.newkey"]
        names += [] if key_in_child(role) else ["swarmkit_py.ca.certs"]
    for name in names:
        importlib.import_module(name)


# --- the request file ----------------------------------------------------------------------

class BadRequest(ValueError):
    """A request file the agent cannot act on (answered with exit status 2); `req_id`: the
    request's id when it could be read."""

    def __init__(self, msg: str, req_id: str = ""):
        super().__init__(msg)
        self.req_id = req_id


def take_request(state_dir: Path) -> dict | None:
    """The request waiting in `state_dir`, taken (renamed, read, removed); None if there is
    none. A request that is not one raises BadRequest, once: it is gone then."""
    taken = Path(state_dir) / TAKEN
    try:
        os.rename(Path(state_dir) / REQUEST, taken)
    except FileNotFoundError:
        return None
    try:
        raw = taken.read_bytes()
        age = time.time() - taken.stat().st_mtime
    finally:
        taken.unlink(missing_ok=True)
    for name in (ANSWER_RC, ANSWER_OUT, ANSWER_ERR):  # an answer nobody read: its caller is gone
        (Path(state_dir) / name).unlink(missing_ok=True)
    try:
        req = json.loads(raw)
    except ValueError:
        raise BadRequest("not JSON") from None
    rid = req.get("id") if isinstance(req, dict) and isinstance(req.get("id"), str) else ""
    if age > STALE_S:
        raise BadRequest(f"written {age:.0f} s ago: its caller gave up on it", rid)
    if not isinstance(req, dict) or req.get("op") not in ("init", "join"):
        raise BadRequest("no op init or join", rid)
    strs = ("client_bundle",) if req["op"] == "init" else ("manager", "token", "role")
    for k in strs:
        if req.get(k) is not None and not isinstance(req[k], str):
            raise BadRequest(f"{k} must be a string", rid)
    if req["op"] == "join" and not (req.get("manager") and req.get("token")):
        raise BadRequest("a join needs manager and token", rid)
    if req["op"] == "join" and req.get("role") not in (None, "manager", "worker"):
        raise BadRequest("role must be manager or worker", rid)
    return req


def answer(state_dir: Path, rc: int, out: str, err: str, req_id: str = "") -> None:
    """Write the answer to the request taken: stdout, stderr, then the exit status with the
    request's id (`rc id`: the caller takes only its own request's answer, not one left by
    a request whose caller was killed before it came)."""
    from ..ca import write_atomic

    d = Path(state_dir)
    write_atomic(d / ANSWER_OUT, out.encode(), mode=0o600)
    write_atomic(d / ANSWER_ERR, err.encode(), mode=0o600)
    write_atomic(d / ANSWER_RC, f"{rc} {req_id}\n".encode(), mode=0o600)


def request_role(req: dict) -> str | None:
    """The role the request's node will have, when it says (init: manager)."""
    return "manager" if req["op"] == "init" else req.get("role")


def key_in_child(role: str | None) -> bool:
    """Whether the waiting agent makes a join's key in a child process: unless the node will
    be a manager, which loads `cryptography` anyway (a worker's agent never does; a join
    without a role may make either, and its node is a worker until it says otherwise)."""
    return role != "manager"


async def serve(cfg: AgentConfig, req: dict, out: TextIO, err: TextIO, load_manager_half=None) -> int:
    """Run a taken request as its command would; `load_manager_half()`, when the node will be a
    manager, starts loading what its agent needs then (after this request's own imports)."""
    import asyncio

    if req["op"] == "join":
        refused = join_refusal(cfg)
        if refused is not None:
            print(refused[1], file=err)
            return refused[0]
    role = request_role(req)
    await asyncio.to_thread(import_for, req["op"], role)
    if load_manager_half is not None and role == "manager":
        load_manager_half()
    if req["op"] == "init":
        return await asyncio.to_thread(init_node, cfg, req.get("client_bundle"), out, err)
    return await join_node(cfg, req["manager"], req["token"], out, err, key_in_child=key_in_child(role))
