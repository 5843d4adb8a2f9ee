"""How an assigned task becomes the engine's create body, without an engine."""

from swarmkit_py.worker.executor.docker_adapter import (
    container_labels,
    container_name,
    create_config,
    has_healthcheck,
    health_status,
    stop_timeout,
)
from tests.unit.test_executor_fixtures import SECOND, assigned


def test_minimal_task_leaves_image_defaults_alone():
    t = assigned("t1")
    assert create_config(t) == {"Image": "img", "Labels": container_labels(t), "Env": [],
                                "Tty": False, "OpenStdin": False,
                                "HostConfig": {"NetworkMode": "default"}}


def test_replicated_task_named_by_slot_global_by_node():
    assert container_name(assigned("t1", slot=3)) == "web.3.t1"
    assert container_name(assigned("t1", slot=None, node_id="n1")) == "web.n1.t1"


def test_command_replaces_entrypoint_and_args_replace_cmd():
    config = create_config(assigned("t1", Command=["sh", "-c"], Args=["echo"], Env=["A=1"]))
    assert (config["Entrypoint"], config["Cmd"], config["Env"]) == \
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
    config = create_config(t)
    host = config["HostConfig"]
    assert host["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "", "HostPort": ""}],
        "53/udp": [{"HostIp": "", "HostPort": "53"}],
    }
    assert config["ExposedPorts"] == {"53/udp": {}, "80/tcp": {}}
    assert (host["NanoCpus"], host["Memory"]) == (500_000_000, 1 << 26)
    assert config["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 500_000_000,
                                     "Timeout": 2_000_000_000, "Retries": 3, "StartPeriod": 0}


def test_overlay_networks_first_at_creation_with_its_address_mac_and_dns():
    net = {"id": "n1", "name": "front", "subnet": "10.0.1.0/24", "gateway": "10.0.1.1",
           "vni": 4097, "address": "10.0.1.5/24", "aliases": ["web"]}
    other = {**net, "id": "n2", "name": "back", "address": "10.0.2.7/24", "aliases": []}
    t = assigned("t1", networks=[net, other])
    assert [n.name for n in t.networks] == ["front", "back"] and t.networks[0].ip == "10.0.1.5"
    config = create_config(t)
    assert config["HostConfig"]["NetworkMode"] == "front"
    assert config["NetworkingConfig"] == {"EndpointsConfig": {
        "front": {"IPAMConfig": {"IPv4Address": "10.0.1.5"}, "Aliases": ["web"]}}}
    assert (config["MacAddress"], config["HostConfig"]["Dns"]) == \
        ("02:42:0a:00:01:05", ["10.0.1.1"])


def test_health_check_without_test_leaves_the_images_own():
    assert "Healthcheck" not in create_config(assigned("t1", Healthcheck={"Interval": SECOND}))


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
    config = create_config(assigned("t1", Hostname="h1", Dir="/srv", User="1000:1000",
                                    Groups=["audio", "50"], Init=True, StopSignal="SIGINT",
                                    limits={"Pids": 64}))
    host = config["HostConfig"]
    assert (config["Hostname"], config["WorkingDir"], config["User"], host["GroupAdd"],
            host["Init"], config["StopSignal"], host["PidsLimit"]) == \
        ("h1", "/srv", "1000:1000", ["audio", "50"], True, "SIGINT", 64)
    assert "Init" not in create_config(assigned("t2"))["HostConfig"]


def test_hosts_with_aliases_selinux_labels_and_spec_nameservers_after_the_overlay_resolver():
    net = {"id": "n1", "name": "front", "subnet": "10.0.1.0/24", "gateway": "10.0.1.1",
           "vni": 4097, "address": "10.0.1.5/24", "aliases": []}
    t = assigned("t1", networks=[net], Hosts=["10.9.9.9 api api.local"],
                 DNSConfig={"Nameservers": ["192.0.2.1"], "Search": ["s"]},
                 Privileges={"SELinuxContext": {"Disable": True, "Level": "s0"}},
                 StopGracePeriod=2 * SECOND, ReadOnly=True, OpenStdin=True)
    config = create_config(t)
    host = config["HostConfig"]
    assert host["ExtraHosts"] == ["api:10.9.9.9", "api.local:10.9.9.9"]
    assert host["SecurityOpt"] == ["label=disable", "label=level:s0"]
    assert (host["Dns"], host["DnsSearch"]) == (["10.0.1.1", "192.0.2.1"], ["s"])
    assert (config["StopTimeout"], host["ReadonlyRootfs"], config["OpenStdin"]) == (2, True, True)
