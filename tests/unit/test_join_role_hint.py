"""`swarmkit-py join --expect-role manager`: the agent waiting for node.json loads the manager
half in a thread while the join runs (it used to import it on its event loop once the join
was done, on the way to Reachable); a worker's agent never does. In a fresh interpreter:
what is imported is the point."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from swarmkit_py.agent.state import JOINING_AS, role_hint

SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from swarmkit_py.agent.agent import Agent
    from swarmkit_py.agent.config import AgentConfig

    state, hint, role = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

    async def main():
        agent = Agent(AgentConfig(state_dir=state, listen_addr="127.0.0.1:1"))
        waiting = asyncio.ensure_future(agent._wait_for_state())
        if hint:
            (state / "joining-as").write_text(hint)
        await asyncio.sleep(0.3)
        started = agent._manager_half is not None
        (state / "node.json").write_text(json.dumps({"node_id": "n", "cluster_id": "c", "role": role}))
        st = await waiting
        if agent._manager_half is not None:
            await agent._manager_half
        print(json.dumps([started, st.role, "swarmkit_py.manager.manager" in sys.modules]))

    asyncio.run(main())
""")


def _wait(tmp_path, hint: str, role: str) -> list:
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), hint, role], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return __import__("json").loads(r.stdout.splitlines()[-1])


def test_a_join_as_manager_loads_the_manager_half_while_the_agent_waits(tmp_path):
    assert _wait(tmp_path, "manager", "manager") == [True, "manager", True]


def test_a_worker_without_the_hint_never_imports_the_manager_half(tmp_path):
    assert _wait(tmp_path, "", "worker") == [False, "worker", False]


def test_the_cli_removes_its_hint_when_the_join_fails(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\nadvertise_addr: 127.0.0.1:2377\n")
    r = subprocess.run([sys.executable, "-m", "swarmkit_py.cli.main", "join", "--token", "not-a-token",
                        "--expect-role", "manager", "127.0.0.1:1", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "join:" in r.stderr
    assert not (tmp_path / "state" / JOINING_AS).exists() and role_hint(tmp_path / "state") is None
    (tmp_path / "state" / JOINING_AS).write_text("admin")
    assert role_hint(tmp_path / "state") is None  # only a role it knows
