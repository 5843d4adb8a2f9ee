"""How a TaskSpec becomes the engine's create arguments, without an engine."""

from swarmkit_py.worker.executor import TaskSpec
from swarmkit_py.worker.executor.docker_adapter import (
    container_labels,
    create_args,
    has_healthcheck,
    health_status,
)

BASE = {"task_id": "t1", "service_id": "s1", "service_name": "web", "node_id": "n1",
        "image": "img", "slot": 1}


def test_minimal_task_leaves_image_defaults_alone():
    args = create_args(TaskSpec.from_dict(BASE))
    assert args == {"image": "img", "name": "web.1.t1", "labels": container_labels(
        TaskSpec.from_dict(BASE)), "environment": []}


def test_command_replaces_entrypoint_and_args_replace_cmd():
    args = create_args(TaskSpec.from_dict({**BASE, "command": ["sh", "-c"], "args": ["echo"]}))
    assert (args["entrypoint"], args["command"]) == (["sh", "-c"], ["echo"])


def test_swarm_labels_win_over_user_labels():
    labels = container_labels(TaskSpec.from_dict(
        {**BASE, "labels": {"com.docker.swarm.task.id": "forged", "team": "a"}}))
    assert labels["com.docker.swarm.task.id"] == "t1"
    assert labels["com.docker.swarm.task.name"] == "web.1.t1"
    assert labels["team"] == "a"


def test_ports_limits_and_healthcheck():
    s = TaskSpec.from_dict({
        **BASE,
        "ports": [{"target_port": 80, "published_port": 8080},
                  {"target_port": 80, "host_ip": "127.0.0.1"},
                  {"target_port": 53, "published_port": 53, "protocol": "udp"}],
        "resources": {"nano_cpus": 500_000_000, "memory_bytes": 1 << 26},
        "healthcheck": {"test": ["CMD", "true"], "interval": 0.5, "timeout": 2, "retries": 3},
    })
    args = create_args(s)
    assert args["ports"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": ""}],
        "53/udp": [{"HostIp": "", "HostPort": "53"}],
    }
    assert (args["nano_cpus"], args["mem_limit"]) == (500_000_000, 1 << 26)
    assert args["healthcheck"] == {"test": ["CMD", "true"], "interval": 500_000_000,
                                   "timeout": 2_000_000_000, "retries": 3, "start_period": 0}


def test_health_from_inspect_output():
    assert not has_healthcheck({"Config": {}})
    assert not has_healthcheck({"Config": {"Healthcheck": {"Test": ["NONE"]}}})
    assert has_healthcheck({"Config": {"Healthcheck": {"Test": ["CMD-SHELL", "true"]}}})
    assert health_status({"State": {"Running": True}}) == ""
    assert health_status({"State": {"Health": {"Status": "starting"}}}) == "starting"
