"""testinfra over our own SSH connections: one `host` per inventory host.

testinfra's paramiko backend trusts unknown host keys (WarningPolicy) and knows sudo only
without a password; these checks run every command through the deploy toolkit's connection
instead, so they check host keys against the inventory's known_hosts and become root exactly
as every other operator command does (`ansible_become`, its password kept off command lines). The inventory comes from `--inventory` or
$SWARMKIT_INVENTORY; without one (a plain `pytest` run) the module is skipped.
"""

from __future__ import annotations

import functools
import os

import pytest
import testinfra.host
from testinfra.backend.paramiko import ParamikoBackend

from swarmkit_py.deploy import inventory
from swarmkit_py.deploy.ssh import HostConn


def pytest_addoption(parser):
    parser.addoption("--inventory", default=None, help="Ansible YAML inventory to verify")


def _inventory(config):
    path = config.getoption("--inventory") or os.environ.get("SWARMKIT_INVENTORY")
    return inventory.load(path) if path else None


def pytest_generate_tests(metafunc):
    if "inv_host" in metafunc.fixturenames:
        inv = _inventory(metafunc.config)
        hosts = list(inv.hosts.values()) if inv else []
        metafunc.parametrize("inv_host", hosts, ids=[h.name for h in hosts], scope="module")


def pytest_collection_modifyitems(config, items):
    if _inventory(config) is None:
        skip = pytest.mark.skip(reason="no inventory: pass --inventory or set SWARMKIT_INVENTORY")
        here = os.path.dirname(__file__)
        for it in items:
            if str(it.fspath).startswith(here):  # this hook sees the whole session's items
                it.add_marker(skip)


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


@pytest.fixture(scope="session")
def expected_release():
    from swarmkit_py.deploy import wheelhouse

    return os.environ.get("SWARMKIT_EXPECTED_RELEASE") or wheelhouse.source_version()
