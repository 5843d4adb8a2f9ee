"""What `swarmkit-py join` and `init` import: the wire's vocabulary (`proto`'s CA methods, the
store's ids and enums), not the store's pydantic object models, which `proto.dispatcher` reads
tasks with (issue 13: six `join` processes at once on a bootstrap's path, ~0.1 s of CPU each
spent building models they never use). The packages load those names at first use; every name
they export still resolves, to the object of the module that defines it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("swarmkit_py.store.objects.service", "swarmkit_py.store.objects.taskspec", "swarmkit_py.store.memory",
         "swarmkit_py.proto.dispatcher")

RUN = textwrap.dedent("""
    import json, sys
    from swarmkit_py.cli.main import main
    try:
        rc = main(sys.argv[2:])
    except SystemExit as e:
        rc = e.code
    heavy = json.loads(sys.argv[1])
    print(json.dumps([rc, [m for m in heavy if m in sys.modules]]))
""")


def _run(*argv: str) -> list:
    r = subprocess.run([sys.executable, "-c", RUN, json.dumps(HEAVY), *argv], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_join_does_not_build_the_store_models(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\nadvertise_addr: 127.0.0.1:2377\n")
    rc, loaded = _run("join", "--token", "not-a-token", "--expect-role", "worker", "127.0.0.1:1",
                      "--config", str(cfg))
    assert rc == 1  # the token is refused: the join path ran up to the CA call
    assert loaded == []


def test_init_does_not_build_the_store_models(tmp_path):
    rc, loaded = _run("init", "--state-dir", str(tmp_path / "state"), "--advertise-addr", "127.0.0.1:2377")
    assert rc == 0 and (tmp_path / "state" / "node.json").exists()
    assert loaded == []


@pytest.mark.parametrize("package", ["swarmkit_py.store", "swarmkit_py.store.objects", "swarmkit_py.proto"])
def test_every_exported_name_resolves(package):
    mod = importlib.import_module(package)
    for name in mod.__all__:
        value = getattr(mod, name)
        assert value is not None, name
        home = getattr(value, "__module__", None)
        if home and home.startswith("swarmkit_py.") and isinstance(value, type):
            assert getattr(importlib.import_module(home), name) is value, name
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018
    ns: dict = {}
    exec(f"from {package} import *", ns)
    assert set(mod.__all__) <= set(ns)


def test_lazy_names_are_the_defining_modules_objects():
    from swarmkit_py import proto, store
    from swarmkit_py.proto import dispatcher
    from swarmkit_py.store import memory, tx
    from swarmkit_py.store.objects import KINDS, node

    assert store.Node is node.Node and KINDS["node"] is node.Node
    assert store.MemoryStore is memory.MemoryStore and store.Transaction is tx.Transaction
    assert proto.AssignedTask is dispatcher.AssignedTask and proto.SESSION == dispatcher.SESSION
