"""How an assigned task becomes the engine's create arguments, without an engine."""

from swarmkit_py.worker.executor.docker_adapter import (
    container_labels,
    container_name,
    create_args,
    has_healthcheck,
    health_status,
    stop_timeout,
)
from tests.unit.test_executor_fixtures import SECOND, assigned


def test_minimal_task_leaves_image_defaults_alone():
    t = assigned("t1")
    assert create_args(t) == {"image": "img", "name": "web.1.t1",
                              "labels": container_labels(t), "environment": []}


def test_replicated_task_named_by_slot_global_by_node():
    assert container_name(assigned("t1", slot=3)) == "web.3.t1"
    assert container_name(assigned("t1", slot=None, node_id="n1")) == "web.n1.t1"


def test_command_replaces_entrypoint_and_args_replace_cmd():
    args = create_args(assigned("t1", Command=["sh", "-c"], Args=["echo"], Env=["A=1"]))
    assert (args["entrypoint"], args["command"], args["environment"]) == \
        (["sh", "-c"], ["echo"], ["A=1"])


def test_swarm_labels_win_over_user_labels():
    labels = container_labels(
        assigned("t1", Labels={"com.docker.swarm.task.id": "forged", "team": "a"}))
    assert labels["com.docker.swarm.task.id"] == "t1"
    assert labels["com.docker.swarm.task.name"] == "web.1.t1"
    assert labels["team"] == "a"


def test_ports_limits_and_healthcheck_keep_nanoseconds():
    t = assigned(
        "t1",
        ports=[{"TargetPort": 80, "PublishedPort": 8080, "PublishMode": "host"},
               {"TargetPort": 80, "PublishMode": "host"},
               {"TargetPort": 53, "PublishedPort": 53, "Protocol": "udp", "PublishMode": "host"}],
        limits={"NanoCPUs": 500_000_000, "MemoryBytes": 1 << 26},
        Healthcheck={"Test": ["CMD", "true"], "Interval": SECOND // 2, "Timeout": 2 * SECOND,
                     "Retries": 3},
    )
    args = create_args(t)
    assert args["ports"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "", "HostPort": ""}],
        "53/udp": [{"HostIp": "", "HostPort": "53"}],
    }
    assert (args["nano_cpus"], args["mem_limit"]) == (500_000_000, 1 << 26)
    assert args["healthcheck"] == {"test": ["CMD", "true"], "interval": 500_000_000,
                                   "timeout": 2_000_000_000, "retries": 3, "start_period": 0}


def test_overlay_networks_first_at_creation_with_its_address_mac_and_dns():
    net = {"id": "n1", "name": "front", "subnet": "10.0.1.0/24", "gateway": "10.0.1.1",
           "vni": 4097, "address": "10.0.1.5/24", "aliases": ["web"]}
    other = {**net, "id": "n2", "name": "back", "address": "10.0.2.7/24", "aliases": []}
    t = assigned("t1", networks=[net, other])
    assert [n.name for n in t.networks] == ["front", "back"] and t.networks[0].ip == "10.0.1.5"
    args = create_args(t)
    assert args["network"] == "front"
    assert args["networking_config"] == {
        "front": {"IPAMConfig": {"IPv4Address": "10.0.1.5"}, "Aliases": ["web"]}}
    assert (args["mac_address"], args["dns"]) == ("02:42:0a:00:01:05", ["10.0.1.1"])


def test_health_check_without_test_leaves_the_images_own():
    assert "healthcheck" not in create_args(assigned("t1", Healthcheck={"Interval": SECOND}))


def test_stop_timeout_is_whole_seconds_rounded_up_with_swarms_default():
    assert stop_timeout(assigned("t1")) == 10
    assert stop_timeout(assigned("t1", StopGracePeriod=1_500_000_000)) == 2
    assert stop_timeout(assigned("t1", StopGracePeriod=5 * SECOND), grace=0) == 0


def test_health_from_inspect_output():
    assert not has_healthcheck({"Config": {}})
    assert not has_healthcheck({"Config": {"Healthcheck": {"Test": ["NONE"]}}})
    assert has_healthcheck({"Config": {"Healthcheck": {"Test": ["CMD-SHELL", "true"]}}})
    assert health_status({"State": {"Running": True}}) == ""
    assert health_status({"State": {"Health": {"Status": "starting"}}}) == "starting"


def test_container_spec_fields_reach_the_create_arguments():
    args = create_args(assigned("t1", Hostname="h1", Dir="/srv", User="1000:1000",
                                Groups=["audio", "50"], Init=True, StopSignal="SIGINT",
                                limits={"Pids": 64}))
    assert (args["hostname"], args["working_dir"], args["user"], args["group_add"],
            args["init"], args["stop_signal"], args["pids_limit"]) == \
        ("h1", "/srv", "1000:1000", ["audio", "50"], True, "SIGINT", 64)
    assert "init" not in create_args(assigned("t2"))


def test_hosts_with_aliases_selinux_labels_and_spec_nameservers_after_the_overlay_resolver():
    net = {"id": "n1", "name": "front", "subnet": "10.0.1.0/24", "gateway": "10.0.1.1",
           "vni": 4097, "address": "10.0.1.5/24", "aliases": []}
    t = assigned("t1", networks=[net], Hosts=["10.9.9.9 api api.local"],
                 DNSConfig={"Nameservers": ["192.0.2.1"], "Search": ["s"]},
                 Privileges={"SELinuxContext": {"Disable": True, "Level": "s0"}},
                 StopGracePeriod=2 * SECOND, ReadOnly=True, OpenStdin=True)
    args = create_args(t)
    assert args["extra_hosts"] == ["api:10.9.9.9", "api.local:10.9.9.9"]
    assert args["security_opt"] == ["label=disable", "label=level:s0"]
    assert (args["dns"], args["dns_search"]) == (["10.0.1.1", "192.0.2.1"], ["s"])
    assert (args["stop_timeout"], args["read_only"], args["stdin_open"]) == (2, True, True)
