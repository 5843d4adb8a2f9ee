"""Inventory validation, role choice and template rendering: no lab, no root, milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from swarmkit_py.agent.config import AgentConfig
from swarmkit_py.deploy import inventory
from swarmkit_py.deploy.bootstrap import choose_managers
from swarmkit_py.deploy.inventory import InventoryError
from swarmkit_py.deploy.roles import Role

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, doc) -> Path:
    p = tmp_path / "hosts.yml"
    p.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return p


def test_group_and_host_vars_follow_ansible_precedence(tmp_path):
    p = write(tmp_path, {"all": {
        "vars": {"ansible_user": "admin", "ansible_port": 2222, "ansible_become": True,
                 "ansible_ssh_common_args": "-o UserKnownHostsFile=kh -o StrictHostKeyChecking=yes"},
        "hosts": {"a": {"ansible_host": "10.0.0.1"}},
        "children": {
            "managers": {"hosts": {"b": {"ansible_port": 22}}, "vars": {"ansible_user": "ops"}},
            "workers": {"hosts": {"c": None}},
        }}})
    inv = inventory.load(p)
    assert list(inv.hosts) == ["a", "b", "c"]
    a, b, c = inv.hosts["a"], inv.hosts["b"], inv.hosts["c"]
    assert (a.address, a.port, a.user, a.become) == ("10.0.0.1", 2222, "admin", True)
    assert (b.address, b.port, b.user) == ("b", 22, "ops")
    assert c.known_hosts == tmp_path / "kh"
    assert inv.group("managers") == ["b"] and inv.group("workers") == ["c"]


@pytest.mark.parametrize("doc, words", [
    ({"all": {"hosts": {"h1": {"ansible_prot": 22}}}}, ["host h1", "'ansible_prot'", "ansible_port"]),
    ({"all": {"hosts": {"h1": {"ansible_port": "twenty"}}}}, ["host h1", "'ansible_port'", "twenty"]),
    ({"all": {"vars": {"swarmkit_log_levl": "DEBUG"}, "hosts": {"h1": None}}}, ["group all", "swarmkit_log_level"]),
    ({"all": {"host": {"h1": None}}}, ["group all", "unknown key"]),
    ({"all": {"children": {"managers": {"hosts": {"h1": None}}, "workers": {"hosts": {"h1": None}}}}},
     ["host h1", "both"]),
    ({"hosts": {"h1": None}}, ["'all:'"]),
])
def test_mistakes_name_file_host_and_field(tmp_path, doc, words):
    p = write(tmp_path, doc)
    with pytest.raises(InventoryError) as e:
        inventory.load(p)
    msg = str(e.value)
    assert str(p) in msg
    for w in words:
        assert w in msg, msg


def test_missing_host_and_missing_file(tmp_path):
    inv = inventory.load(write(tmp_path, {"all": {"hosts": {"h1": None, "h2": None}}}))
    with pytest.raises(InventoryError, match=r"hosts\.yml: no host 'hh1'.*did you mean 'h1'"):
        inv.host("hh1")
    with pytest.raises(InventoryError, match="does not exist"):
        inventory.load(tmp_path / "nope.yml")


def test_choose_managers_pins_refuses_and_warns(tmp_path):
    inv = inventory.load(write(tmp_path, {"all": {"hosts": {f"h{i}": None for i in range(1, 10)},
                                                  "children": {"managers": {"hosts": {"h5": None}},
                                                               "workers": {"hosts": {"h1": None}}}}}))
    m, w, warn = choose_managers(inv, 3)
    assert [h.name for h in m] == ["h5", "h2", "h3"] and "h1" in [h.name for h in w] and not warn
    assert "odd" in choose_managers(inv, 4)[2][0]
    assert any("more than 7" in x for x in choose_managers(inv, 8)[2])
    with pytest.raises(InventoryError, match="only 9 host"):
        choose_managers(inv, 10)
    with pytest.raises(InventoryError, match="may be managers"):
        choose_managers(inv, 9)


def test_agent_template_renders_a_valid_agent_config():
    role, common = Role("agent"), Role("common")
    v = {**common.defaults, **role.defaults, "inventory_hostname": "h1", "advertise_ip": "10.1.2.3"}
    cfg = AgentConfig.model_validate(yaml.safe_load(role.render("agent.yml.j2", v)))
    assert cfg.advertise_addr == "10.1.2.3:2377" and cfg.api_listen == "10.1.2.3:2376" and cfg.hostname == "h1"
    script = role.render("autostart.sh.j2", v)
    assert "/opt/swarmkit-py/current/bin/swarmkit-py" in script and "flock -n 9" in script
    assert "ExecStart=/opt/swarmkit-py/current/bin/swarmkit-py agent" in role.render("swarmkit-py.service.j2", v)


def test_example_inventories_are_valid():
    for p in (REPO / "inventories").glob("*/hosts.yml"):
        if p.parent.name != "lab":
            assert inventory.load(p).hosts, p
