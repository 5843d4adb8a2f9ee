"""What must hold on every deployed host, whatever the inventory: checked with testinfra."""

from __future__ import annotations

import json

import yaml


def _state_dir(inv_host):
    return inv_host.vars["swarmkit_state_dir"]


def test_agent_runs_under_its_service_manager(host, inv_host):
    run = inv_host.vars["swarmkit_run_dir"]
    if host.file("/run/systemd/system").is_directory:
        unit = inv_host.vars["swarmkit_unit"]
        assert host.service(unit).is_running
        assert host.service(unit).is_enabled
        props = dict(line.split("=", 1) for line in host.check_output(
            f"systemctl show -p MainPID -p Restart -p ActiveState -p SubState {unit}").splitlines())
        assert (props["ActiveState"], props["SubState"]) == ("active", "running"), props
        assert props["Restart"] == "on-failure", "a crashed agent must be started again"
        assert not host.file(f"{run}/supervisor.pid").exists, "systemd host also runs the supervisor"
        agent_pid = props["MainPID"]
        cmd = host.file(f"/proc/{agent_pid}/cmdline").content_string.replace("\0", " ")
        assert f"swarmkit-py agent --config {inv_host.vars['swarmkit_agent_config']}" in cmd, cmd
        assert host.check_output(f"ps -o user= -p {agent_pid}").strip() == "root"
        return
    sup = host.file(f"{run}/supervisor.pid")
    assert sup.exists, "no supervisor pidfile: the agent is not supervised"
    sup_pid = sup.content_string.strip()
    agent_pid = host.file(f"{run}/agent.pid").content_string.strip()
    assert host.run(f"kill -0 {sup_pid}").rc == 0, f"supervisor pid {sup_pid} is not running"
    ppid = host.check_output(f"ps -o ppid= -p {agent_pid}").strip()
    assert ppid == sup_pid, f"agent {agent_pid} is not the supervisor's child (ppid {ppid})"
    cmd = host.file(f"/proc/{agent_pid}/cmdline").content_string.replace("\0", " ")
    assert "swarmkit-py agent" in cmd, cmd


def test_agent_listens_on_its_own_address(host, inv_host):
    ip = inv_host.advertise_ip
    port = inv_host.vars["swarmkit_cluster_port"]
    assert host.socket(f"tcp://{ip}:{port}").is_listening
    st = host.file(f"{_state_dir(inv_host)}/node.json")
    if st.exists and json.loads(st.content_string).get("role") == "manager":
        api = inv_host.vars["swarmkit_api_port"]
        assert host.socket(f"tcp://{ip}:{api}").is_listening, "a manager serves the Docker API"
    if int(inv_host.vars["swarmkit_metrics_port"]):
        assert host.socket(f"tcp://{ip}:{inv_host.vars['swarmkit_metrics_port']}").is_listening


def test_config_matches_inventory(host, inv_host):
    cfg = yaml.safe_load(host.file(inv_host.vars["swarmkit_agent_config"]).content_string)
    ip = inv_host.advertise_ip
    assert cfg["advertise_addr"] == f"{ip}:{inv_host.vars['swarmkit_cluster_port']}"
    assert cfg["listen_addr"] == cfg["advertise_addr"]
    assert cfg["api_listen"] == f"{ip}:{inv_host.vars['swarmkit_api_port']}"
    assert cfg["hostname"] == inv_host.name
    assert cfg["log_level"] == inv_host.vars["swarmkit_log_level"]
    assert str(cfg["state_dir"]) == _state_dir(inv_host)


def test_key_files_are_private(host, inv_host):
    keys = host.check_output(f"find {_state_dir(inv_host)}/certs -name '*.key' -o -name '*key.pem'").split()
    assert keys, "no key files: the node has no identity"
    for k in keys:
        f = host.file(k)
        assert f.mode == 0o600, f"{k} has mode {oct(f.mode)}"
        assert f.user == "root"


def test_current_points_to_expected_release(host, inv_host, expected_release):
    root = inv_host.vars["swarmkit_root"]
    cur = host.file(f"{root}/current")
    assert cur.is_symlink
    assert cur.linked_to == f"{root}/releases/{expected_release}"
    assert host.file(f"{root}/releases/{expected_release}/.swarmkit-release").exists
    assert host.run(f"{root}/current/bin/swarmkit-py --help").rc == 0


def test_docker_engine_answers(host):
    r = host.run("python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('/var/run/docker.sock');"
                 " s.sendall(b'GET /_ping HTTP/1.0\\r\\n\\r\\n'); print(s.recv(64).split(b'\\r\\n')[0].decode())\"")
    assert r.rc == 0 and "200" in r.stdout, r.stdout + r.stderr
