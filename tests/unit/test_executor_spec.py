"""TaskSpec: the loose input shapes the worker may hand over, and Swarm's naming."""

import pytest

from swarmkit_py.worker.executor import HealthCheck, PortSpec, TaskSpec, TaskState

BASE = {"task_id": "t1", "service_id": "s1", "service_name": "web", "node_id": "n1",
        "image": "img"}


def test_defaults_follow_swarm():
    s = TaskSpec.from_dict(BASE)
    assert s.stop_grace_period == 10.0
    assert (s.command, s.args, s.env, s.ports, s.healthcheck) == ((), (), (), (), None)
    assert (s.nano_cpus, s.memory_bytes) == (0, 0)


def test_replicated_task_named_by_slot_global_by_node():
    assert TaskSpec.from_dict({**BASE, "slot": 3}).name == "web.3.t1"
    assert TaskSpec.from_dict(BASE).name == "web.n1.t1"


def test_env_as_mapping_or_list():
    assert TaskSpec.from_dict({**BASE, "env": {"A": 1, "B": ""}}).env == ("A=1", "B=")
    assert TaskSpec.from_dict({**BASE, "env": ["A=1"]}).env == ("A=1",)


def test_limits_flat_or_under_resources():
    nested = TaskSpec.from_dict({**BASE, "resources": {"nano_cpus": 5, "memory_bytes": 7}})
    flat = TaskSpec.from_dict({**BASE, "nano_cpus": 5, "memory_bytes": 7})
    assert (nested.nano_cpus, nested.memory_bytes) == (flat.nano_cpus, flat.memory_bytes) == (5, 7)


def test_ports_and_healthcheck_from_dicts():
    s = TaskSpec.from_dict({**BASE, "ports": [{"target_port": 80, "published_port": 8080}],
                            "healthcheck": {"test": "true", "interval": 0.5, "retries": 2}})
    assert s.ports == (PortSpec(target_port=80, published_port=8080),)
    assert s.healthcheck == HealthCheck(test=("CMD-SHELL", "true"), interval=0.5, retries=2)
    assert not s.healthcheck.disabled
    assert HealthCheck(test=("NONE",)).disabled


def test_missing_required_field_is_an_error():
    with pytest.raises(KeyError):
        TaskSpec.from_dict({k: v for k, v in BASE.items() if k != "image"})


def test_states_order_like_swarm_and_print_lowercase():
    assert TaskState.ACCEPTED < TaskState.PREPARING < TaskState.READY < TaskState.STARTING
    assert TaskState.STARTING < TaskState.RUNNING < TaskState.COMPLETE
    assert not TaskState.RUNNING.terminal
    assert all(s.terminal for s in (TaskState.COMPLETE, TaskState.FAILED, TaskState.SHUTDOWN,
                                    TaskState.REJECTED))
    assert str(TaskState.REJECTED) == "rejected"
