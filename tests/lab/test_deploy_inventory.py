"""Inventory validation, role choice and template rendering: no lab, no root, milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from swarmkit_py.agent.config import AgentConfig
from swarmkit_py.deploy import inventory, variables
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
    role = Role("agent")
    v = {**variables.resolve(variables.role_defaults()), "inventory_hostname": "h1", "advertise_ip": "10.1.2.3"}
    cfg = AgentConfig.model_validate(yaml.safe_load(role.render("agent.yml.j2", v)))
    assert cfg.advertise_addr == "10.1.2.3:2377" and cfg.api_listen == "10.1.2.3:2376" and cfg.hostname == "h1"
    assert cfg.metrics_listen is None  # off unless asked for
    on = AgentConfig.model_validate(yaml.safe_load(role.render("agent.yml.j2", {**v, "swarmkit_metrics_port": 9323})))
    assert on.metrics_listen == "10.1.2.3:9323"
    script = role.render("autostart.sh.j2", v)
    assert "/opt/swarmkit-py/current/bin/swarmkit-py" in script and "flock -n 9" in script
    assert ("ExecStart=/opt/swarmkit-py/current/bin/swarmkit-py agent --config /etc/swarmkit-py/agent.yml"
            in role.render("swarmkit-py.service.j2", v))


def test_example_inventories_are_valid():
    for p in (REPO / "inventories").glob("*/hosts.yml"):
        if p.parent.name != "lab":
            assert inventory.load(p).hosts, p


def test_role_defaults_are_every_hosts_vars_and_templates_follow_overrides(tmp_path, monkeypatch):
    p = write(tmp_path, {"all": {"vars": {"swarmkit_config_dir": "/srv/skpy"},
                                 "hosts": {"h1": None, "h2": {"swarmkit_api_port": 12376}}}})
    h1, h2 = inventory.load(p).hosts.values()
    assert h1.vars["swarmkit_root"] == "/opt/swarmkit-py" and h1.vars["swarmkit_api_port"] == 2376
    assert h2.vars["swarmkit_api_port"] == 12376
    # a default built from another variable follows the inventory's override, as in Ansible
    assert h1.vars["swarmkit_agent_config"] == "/srv/skpy/agent.yml"
    assert h1.vars["swarmkit_supervisor"] == "/srv/skpy/autostart"
    # every swarmkit_* name in the roles' defaults is a known inventory variable (and no other)
    for k in variables.role_defaults():
        assert k in inventory.known_swarmkit()
    with pytest.raises(InventoryError, match="'swarmkit_agent_confg'.*did you mean 'swarmkit_agent_config'"):
        inventory.load(write(tmp_path, {"all": {"hosts": {"h1": {"swarmkit_agent_confg": "/x"}}}}))


def test_templated_variables_name_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("SKPY_TEST_LEVEL", "DEBUG")
    p = write(tmp_path, {"all": {"hosts": {"h1": {"swarmkit_log_level": "{{ lookup('env', 'SKPY_TEST_LEVEL') }}"}}}})
    assert inventory.load(p).hosts["h1"].vars["swarmkit_log_level"] == "DEBUG"
    monkeypatch.delenv("SKPY_TEST_LEVEL")
    with pytest.raises(InventoryError, match="host h1: lookup\\('env', 'SKPY_TEST_LEVEL'\\): .*not set"):
        inventory.load(p)
    p = write(tmp_path, {"all": {"hosts": {"h1": {"swarmkit_root": "{{ swarmkit_nope }}/x"}}}})
    with pytest.raises(InventoryError, match="host h1: .*'swarmkit_nope' is undefined"):
        inventory.load(p)


def test_roles_have_ansibles_layout_and_only_known_modules(tmp_path):
    for name in variables.ROLE_ORDER:
        d = REPO / "roles" / name
        assert (d / "tasks" / "main.yml").is_file() and (d / "defaults" / "main.yml").is_file()
        assert not list(d.glob("*.yml")), f"{d}: role files belong in tasks/, defaults/, handlers/"
        role = Role(name)
        assert role.tasks
        for step in role.tasks + role.handlers:  # every template a step names exists
            if "template" in step:
                assert (d / "templates" / step["template"]["src"]).is_file()
    assert [s["name"] for s in Role("agent").handlers] == ["restart agent", "reload supervisor"]
    bad = tmp_path / "r" / "tasks"
    bad.mkdir(parents=True)
    (bad / "main.yml").write_text("- name: x\n  service: {name: docker, state: started}\n")
    with pytest.raises(ValueError, match="needs exactly one of .*agent_service"):
        Role("r", base=tmp_path)
    (bad / "main.yml").write_text("- name: x\n  directory: {path: /x, state: absent}\n")
    with pytest.raises(ValueError, match=r"directory takes \['path', 'mode'\], not \['state'\]"):
        Role("r", base=tmp_path)


def test_every_task_name_in_the_docs_exists():
    """README, scripts and runbooks tell operators to type `invoke NAME`: each NAME must be a task."""
    import re

    from invoke.config import Config
    from invoke.loader import FilesystemLoader

    module, _ = FilesystemLoader(start=str(REPO), config=Config()).load("tasks")
    known = set(module.ns.task_names)
    texts = [REPO / "README.md", *(REPO / "scripts").glob("*.sh"), *(REPO / "docs").rglob("*.md")]
    used = {m for p in texts for m in re.findall(r"\binvoke ([a-z][a-z0-9.-]*[a-z0-9])", p.read_text())}
    used -= {"tasks"}  # prose ("invoke tasks")
    assert used, "no `invoke NAME` found in the docs"
    assert not used - known, f"documented but not tasks: {sorted(used - known)}"
    for name in ("status", "lab.status", "bootstrap", "lab.up", "docker-env", "join-token"):
        assert name in known


def test_become_password_is_read_only_when_a_connection_needs_it(tmp_path):
    doc = {"all": {"vars": {"ansible_user": "deploy", "ansible_become": True,
                            "ansible_become_password": "{{ lookup('env', 'SKPY_TEST_UNSET_PW') }}"},
                   "hosts": {"h1": None}}}
    h = inventory.load(write(tmp_path, doc)).hosts["h1"]  # loading does not need the secret
    assert (h.user, h.become, h.become_user) == ("deploy", True, "root")
    assert h.vars["ansible_become_password"].startswith("{{")  # not resolved into the vars
    doc["all"]["vars"]["ansible_become_method"] = "su"
    with pytest.raises(InventoryError, match="host h1: field 'ansible_become_method'"):
        inventory.load(write(tmp_path, doc))
