"""The `swarmkit-py` command: the agent itself and the host-local commands around it.

    swarmkit-py agent   [--config agent.yml] [overrides]      run the agent (foreground)
    swarmkit-py init    --advertise-addr IP:2377 [--client-bundle DIR]  found a new swarm on this host
    swarmkit-py join    --token T --advertise-addr IP:2377 MANAGER:2377
    swarmkit-py leave   [--force]                              forget this node's swarm state
    swarmkit-py recover --force-new-cluster                    quorum lost: restart as sole manager
    swarmkit-py client-cert --out DIR                          DOCKER_CERT_PATH bundle
    swarmkit-py status                                         this node's view of the swarm
    swarmkit-py unlock  [--wait S] < keyfile                   unlock this locked manager
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..agent.config import AgentConfig

DEFAULT_CONFIG = "/etc/swarmkit-py/agent.yml"


def _config(args) -> AgentConfig:
    path = Path(args.config) if getattr(args, "config", None) else Path(DEFAULT_CONFIG)
    cfg = AgentConfig.load(path) if path.exists() else AgentConfig()
    over = {}
    for key in ("state_dir", "listen_addr", "advertise_addr", "api_listen", "api_socket", "metrics_listen", "hostname", "log_level"):
        v = getattr(args, key, None)
        if v is not None:
            over[key] = v
    if over:
        cfg = AgentConfig.model_validate({**cfg.model_dump(), **over})
    return cfg


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help=f"agent config file (default {DEFAULT_CONFIG} if it exists)")
    p.add_argument("--state-dir", dest="state_dir")
    p.add_argument("--listen-addr", dest="listen_addr")
    p.add_argument("--advertise-addr", dest="advertise_addr")
    p.add_argument("--hostname")


def cmd_agent(args) -> int:
    from ..agent.agent import Agent
    from ..memory import cap_malloc_arenas

    cfg = _config(args)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cap_malloc_arenas()  # before any thread starts: swarmkit_py/memory.py
    agent = Agent(cfg)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(_AbandoningExecutor())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.request_stop)
        await agent.run()

    asyncio.run(main())
    # Once the agent has shut down (state saved, containers left running for the next start
    # to adopt), an engine call still blocked in a thread (a slow inspect, the events stream)
    # must not hold the exit: threads cannot be interrupted, and the interpreter would join
    # them. Every stop of an agent with a running task used to take 10-30 s.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if agent.failure is not None else 0)


class _AbandoningExecutor(ThreadPoolExecutor):
    """The event loop's default executor, whose shutdown does not wait for blocked calls."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def _role_hint(state_dir, role: str | None):
    """While `init`/`join` runs, the role it expects in the state dir (agent.state.role_hint):
    written before this process's own imports, so the agent waiting for node.json loads what
    the role needs meanwhile; removed when the command ends, whatever the outcome."""
    from ..agent.state import JOINING_AS, LocalNode

    if role is None or LocalNode.load(state_dir) is not None:
        yield
        return
    hint = Path(state_dir) / JOINING_AS
    Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    hint.write_text(role)
    try:
        yield
    finally:
        hint.unlink(missing_ok=True)


def cmd_init(args) -> int:
    from ..agent.enroll import init_node

    cfg = _config(args)
    addr = cfg.advertise_addr or cfg.listen_addr
    with _role_hint(cfg.state_dir, None if addr.startswith("0.0.0.0") else "manager"):
        return init_node(cfg, args.client_bundle, sys.stdout, sys.stderr)


def cmd_join(args) -> int:
    from ..agent.enroll import join_node, join_refusal

    cfg = _config(args)
    refused = join_refusal(cfg)
    if refused is not None:
        print(refused[1], file=sys.stderr)
        return refused[0]
    with _role_hint(cfg.state_dir, args.expect_role):
        return asyncio.run(join_node(cfg, args.manager, args.token, sys.stdout, sys.stderr))


def cmd_leave(args) -> int:
    from ..agent.agent import Agent
    from ..agent.state import LocalNode

    cfg = _config(args)
    st = LocalNode.load(cfg.state_dir)
    if st is None:
        print("This node is not part of a swarm.", file=sys.stderr)
        return 1
    if st.role == "manager" and not args.force:
        print(
            "You are attempting to leave the swarm on a node that is participating as a manager. "
            "Removing this node leaves the remaining managers with one fewer member; demote it first "
            "(docker node demote) or use --force to ignore this message.",
            file=sys.stderr,
        )
        return 1
    Agent.wipe(cfg.state_dir)
    print("Node left the swarm.")
    return 0


def _unlock_key(args) -> bytes | None:
    """The auto-lock key for commands that read the Raft state offline: one line of stdin
    with --unlock-key-stdin (never an argument: it would show in `ps` and shell history)."""
    if not getattr(args, "unlock_key_stdin", False):
        return None
    from ..raft.storage import parse_unlock_key

    return parse_unlock_key(sys.stdin.readline())


def _locked_hint(e: Exception) -> str:
    from ..raft.storage import SwarmLockedError

    if isinstance(e, SwarmLockedError):
        return ("this manager's Raft state is auto-locked: pass the unlock key on stdin with "
                "--unlock-key-stdin (e.g. `swarmkit-py ... --unlock-key-stdin < keyfile`)")
    return str(e)


def cmd_recover(args) -> int:
    from ..agent.recover import force_new_cluster

    cfg = _config(args)
    if not args.force_new_cluster:
        print("recover: only --force-new-cluster is supported", file=sys.stderr)
        return 2
    try:
        summary = force_new_cluster(cfg.state_dir, cfg.advertise_addr, unlock_key=_unlock_key(args))
    except SystemExit:
        raise
    except Exception as e:
        print(f"recover: {_locked_hint(e)}", file=sys.stderr)
        return 1
    print(summary)
    return 0


def cmd_unlock(args) -> int:
    """`docker swarm unlock` for this host's agent, through its root-only unix socket, with the
    key read from stdin (one line; a prompt without echo on a terminal): never an argument, so
    it is in no `ps` listing and no shell history. What the deploy toolkit runs over SSH.
    Exit 0: unlocked or not locked (the line says which); 2: the key was refused; 1: no agent
    answered on the socket within --wait seconds."""
    import getpass
    import time

    import docker
    from docker.errors import APIError

    cfg = _config(args)
    if cfg.api_socket is None:
        print("unlock: the agent's config has no api_socket", file=sys.stderr)
        return 1
    key = getpass.getpass("Please enter unlock key: ") if sys.stdin.isatty() else sys.stdin.readline()
    client = docker.APIClient(base_url=f"unix://{cfg.api_socket}", version="1.41", timeout=10)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            state = client.info().get("Swarm", {}).get("LocalNodeState")
            break
        except Exception as e:  # no socket yet (agent starting), or the agent restarting
            if time.monotonic() >= deadline:
                print(f"unlock: no agent answers on {cfg.api_socket}: {e}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    if state != "locked":
        print(f"not locked ({state})")
        return 0
    try:
        client.unlock_swarm(key.strip())
    except APIError as e:
        print(f"refused: {e.explanation or e}", file=sys.stderr)
        return 2
    print("unlocked")
    return 0


AUTOLOCKED_EXIT = 3  # deploy.cluster.CLIENT_CERT_AUTOLOCKED
"""`client-cert`'s exit status when auto-lock keeps the CA key sealed: no retry will help."""


def cmd_client_cert(args) -> int:
    from ..agent.identity import write_client_cert
    from ..agent.state import ROOT_CA_KEY, certs_dir
    from ..raft.storage import Keyring

    cfg = _config(args)
    state = Path(cfg.state_dir)
    if not (certs_dir(state) / ROOT_CA_KEY).exists() and Keyring.is_locked(state / "raft"):
        print("client-cert: auto-lock is on, so the CA key is kept only in the sealed Raft state: reuse an "
              "existing client bundle, or turn auto-lock off (`docker swarm update --autolock=false`) to issue one",
              file=sys.stderr)
        return AUTOLOCKED_EXIT
    out = write_client_cert(cfg.state_dir, Path(args.out), args.name)
    print(f"wrote ca.pem, cert.pem, key.pem to {out}")
    return 0


def cmd_status(args) -> int:
    from ..agent.state import LocalNode

    cfg = _config(args)
    st = LocalNode.load(cfg.state_dir)
    if st is None:
        print(json.dumps({"LocalNodeState": "inactive"}))
        return 0
    from ..raft.storage import Keyring

    print(json.dumps({"LocalNodeState": "active", "NodeID": st.node_id, "ClusterID": st.cluster_id,
                      "Role": st.role, "Managers": st.managers,
                      # sealed by the unlock key on disk: a (re)started agent waits to be unlocked
                      "AutoLocked": Keyring.is_locked(Path(cfg.state_dir) / "raft")}, indent=2))
    return 0


def cmd_log_position(args) -> int:
    """Where this manager's Raft log ends (read from disk; stop the agent first). The deploy
    toolkit's `recover` compares it across surviving managers to pick the most up-to-date."""
    from ..raft.storage import DiskStorage

    cfg = _config(args)
    try:
        s = DiskStorage(Path(cfg.state_dir) / "raft", encrypted=True, unlock_key=_unlock_key(args))
    except Exception as e:  # locked, wrong key, key files missing: say so, no traceback
        print(f"log-position: {_locked_hint(e)}", file=sys.stderr)
        return 1
    try:
        st = s.load()
    finally:
        s.close()
    meta = st.snapshot.meta if st.snapshot else None
    last = st.entries[-1] if st.entries else meta
    print(json.dumps({"term": last.term if last else 0, "index": last.index if last else 0,
                      "commit": st.hard_state.commit, "hs_term": st.hard_state.term}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="swarmkit-py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("agent", help="run the agent")
    _common(p)
    p.add_argument("--api-listen", dest="api_listen")
    p.add_argument("--api-socket", dest="api_socket")
    p.add_argument("--metrics-listen", dest="metrics_listen")
    p.add_argument("--log-level", dest="log_level")
    p.set_defaults(fn=cmd_agent)
    p = sub.add_parser("init", help="found a new swarm with this node as its first manager")
    _common(p)
    p.add_argument("--client-bundle", dest="client_bundle", metavar="DIR",
                   help="also write the operator's client bundle (as `client-cert --out DIR`) into DIR, "
                        "a new directory (0700): signed by the new CA in this process")
    p.set_defaults(fn=cmd_init)
    p = sub.add_parser("join", help="join an existing swarm")
    _common(p)
    p.add_argument("--token", required=True)
    p.add_argument("--expect-role", choices=("manager", "worker"), dest="expect_role",
                   help="the role the token is for, when the caller knows it: the agent starts loading "
                        "what that role needs while the join runs (the certificate issued decides the role)")
    p.add_argument("manager", help="a manager's host:port (2377)")
    p.set_defaults(fn=cmd_join)
    p = sub.add_parser("leave", help="forget this node's swarm state (stop the agent first)")
    _common(p)
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=cmd_leave)
    p = sub.add_parser("recover", help="rebuild a one-manager cluster after quorum loss")
    _common(p)
    p.add_argument("--force-new-cluster", action="store_true", dest="force_new_cluster")
    p.add_argument("--unlock-key-stdin", action="store_true", dest="unlock_key_stdin",
                   help="read the auto-lock unlock key from stdin")
    p.set_defaults(fn=cmd_recover)
    p = sub.add_parser("client-cert", help="write a DOCKER_CERT_PATH bundle for the docker CLI")
    _common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--name", default="operator")
    p.set_defaults(fn=cmd_client_cert)
    p = sub.add_parser("log-position", help="last term/index of this manager's Raft log (agent stopped)")
    _common(p)
    p.add_argument("--unlock-key-stdin", action="store_true", dest="unlock_key_stdin",
                   help="read the auto-lock unlock key from stdin")
    p.set_defaults(fn=cmd_log_position)
    p = sub.add_parser("unlock", help="unlock this host's locked manager (the key on stdin)")
    _common(p)
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the agent to answer")
    p.set_defaults(fn=cmd_unlock)
    p = sub.add_parser("status", help="this node's swarm membership")
    _common(p)
    p.set_defaults(fn=cmd_status)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
