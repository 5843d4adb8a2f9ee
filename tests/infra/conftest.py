"""testinfra over our own SSH connections: one `host` per inventory host.

testinfra's paramiko backend trusts unknown host keys (WarningPolicy) and knows sudo only
without a password; these checks run every command through the deploy toolkit's connection
instead, so they check host keys against the inventory's known_hosts and become root exactly
as every other operator command does (`ansible_become`, its password kept off command lines).

The inventory comes from `--inventory` or $SWARMKIT_INVENTORY (`invoke verify`); without one
(a plain `pytest` run, CI) the checks run against a lab made for them, so they are never
silently skipped where a lab can run.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest
import testinfra.host
from testinfra.backend.paramiko import ParamikoBackend

from swarmkit_py.deploy import inventory, wheelhouse
from swarmkit_py.deploy.ssh import HostConn
from tests.labkit import invoke, operator_env, running_lab


def pytest_addoption(parser):
    parser.addoption("--inventory", default=None, help="Ansible YAML inventory to verify")


AUTO_HOSTS = ("h1", "h2")


def _given(config) -> str | None:
    return config.getoption("--inventory") or os.environ.get("SWARMKIT_INVENTORY")


def pytest_generate_tests(metafunc):
    if "inv_host" in metafunc.fixturenames:
        path = _given(metafunc.config)
        names = list(inventory.load(path).hosts) if path else list(AUTO_HOSTS) if os.geteuid() == 0 else []
        metafunc.parametrize("inv_host", names, ids=names, indirect=True, scope="module")


def pytest_collection_modifyitems(config, items):
    if _given(config) is None and os.geteuid() != 0:
        skip = pytest.mark.skip(reason="no inventory (--inventory, $SWARMKIT_INVENTORY), and the lab needs root")
        here = os.path.dirname(__file__)
        for it in items:
            if str(it.fspath).startswith(here):  # this hook sees the whole session's items
                it.add_marker(skip)


@pytest.fixture(scope="module")
def infra(request, tmp_path_factory, lab_name):
    """(inventory, expected release): the inventory given (`invoke verify`), else a lab made
    for these checks the way production hosts are: systemd as init, a login user with sudo,
    the agent bootstrapped by the toolkit (one manager, one worker)."""
    path = _given(request.config)
    if path:
        yield inventory.load(path), os.environ.get("SWARMKIT_EXPECTED_RELEASE") or wheelhouse.source_version()
        return
    tmp = tmp_path_factory.mktemp("infra")
    env = operator_env(tmp)
    with running_lab(tmp, lab_name("infra"), len(AUTO_HOSTS), user="deploy", init="systemd") as lab:
        invoke(env, "bootstrap", "--managers", "1", inventory=lab.inventory_path)
        release = subprocess.run([sys.executable, "-c", "from swarmkit_py.deploy import wheelhouse; "
                                  "print(wheelhouse.source_version())"], env=env, capture_output=True, text=True,
                                 check=True).stdout.strip()
        yield inventory.load(lab.inventory_path), release


@pytest.fixture(scope="module")
def inv_host(request, infra):
    return infra[0].hosts[request.param]


class _Backend(ParamikoBackend):
    def __init__(self, conn: HostConn):
        self._skpy = conn
        super().__init__(f"paramiko://{conn.host.user}@{conn.host.address}:{conn.host.port}")

    @functools.cached_property
    def client(self):
        return self._skpy._open().client

    def run(self, command: str, *args: str, **kwargs):
        cmd = self.get_command(command, *args)
        r = self._skpy.run(cmd)
        return self.result(r.rc, self.encode(cmd), r.stdout, r.stderr)


@pytest.fixture(scope="module")
def host(inv_host):
    conn = HostConn(inv_host)
    yield testinfra.host.Host(_Backend(conn))
    conn.close()


@pytest.fixture(scope="module")
def expected_release(infra):
    return infra[1]
