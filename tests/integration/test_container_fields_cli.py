"""Every field `docker service create` accepts reaches the task's container, or is refused
with a 400 naming it; unknown keys are dropped with a warning; jobs run to completion; a
client reads back what it wrote (issue 12). The real docker CLI and SDK against one real
agent, checked on the container the engine created.

One cluster for the module and few services, each carrying many fields (the CI budget)."""

from __future__ import annotations

import uuid

import docker.types as dt
import pytest

from swarmkit_py.raft.kv.cluster import free_ports
from swarmkit_py.taskimage import TASK_IMAGE
from swarmkit_py.testing.agents import AgentCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, docker_engine):
    c = AgentCluster(tmp_path_factory.mktemp("fields"))
    m1 = c.first_manager()
    yield c, m1, docker_engine
    c.stop_all()
    c.remove_task_containers(docker_engine)


def task_container(c, engine, service: str):
    def running():
        found = engine.containers.list(filters={"label": f"com.docker.swarm.service.name={service}"})
        return found[0] if found else None

    return c.wait_for(running, 60, f"the container of {service} running")


def test_hostname_workdir_user_groups_init_stop_signal_pids(cluster):
    c, m1, engine = cluster
    c.docker(m1, "service", "create", "-d", "--name", "fields", "--hostname", "box-1",
             "--workdir", "/tmp", "--user", "65534", "--group", "50", "--init",
             "--stop-signal", "SIGINT", "--limit-pids", "64", TASK_IMAGE, "sleep", "3600")
    ct = task_container(c, engine, "fields")
    cfg, host = ct.attrs["Config"], ct.attrs["HostConfig"]
    assert (cfg["Hostname"], cfg["WorkingDir"], cfg["User"], cfg["StopSignal"]) == \
        ("box-1", "/tmp", "65534", "SIGINT")
    assert (host["GroupAdd"], host["Init"], host["PidsLimit"]) == (["50"], True, 64)
    code, out = ct.exec_run(["sh", "-c", "hostname; pwd; id -u; id -G; cat /proc/1/cmdline"])
    lines = out.decode().split("\n")
    assert code == 0 and lines[:3] == ["box-1", "/tmp", "65534"] and "50" in lines[3].split()
    assert lines[4].startswith("/sbin/docker-init")  # --init: PID 1 is the engine's init


def test_limits_mounts_dns_hosts_security_and_health_reach_the_container(cluster, tmp_path):
    c, m1, engine = cluster
    (tmp_path / "hello").write_text("from the node\n")
    vol = f"fld-{uuid.uuid4().hex[:8]}"
    try:
        c.docker(
            m1, "service", "create", "-d", "--name", "limits",
            "--stop-grace-period", "3s", "--ulimit", "nofile=1024:2048",
            "--sysctl", "net.ipv4.ip_forward=1", "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN",
            "--read-only", "--dns", "192.0.2.53", "--dns-search", "example.org",
            "--dns-option", "ndots:2", "--host", "db:10.1.2.3", "--container-label", "tier=db",
            "--health-cmd", "true", "--health-interval", "2s", "--health-retries", "4",
            "--mount", f"type=bind,source={tmp_path},target=/b,readonly",
            "--mount", f"type=volume,source={vol},target=/v,volume-driver=local,"
                       "volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-label=k=v",
            "--mount", "type=tmpfs,target=/t,tmpfs-size=1048576,tmpfs-mode=1770",
            "--isolation", "default", "--tty", "--log-driver", "json-file",
            "--log-opt", "max-size=1m", "--limit-cpu", "0.5", "--limit-memory", "64M",
            "--reserve-memory", "32M", "--reserve-cpu", "0.1", TASK_IMAGE, "sleep", "3600")
        ct = task_container(c, engine, "limits")
        cfg, host = ct.attrs["Config"], ct.attrs["HostConfig"]
        assert (cfg["StopTimeout"], cfg["Tty"], cfg["Labels"]["tier"]) == (3, True, "db")
        assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 2_000_000_000,
                                      "Retries": 4}
        assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
        assert host["Sysctls"] == {"net.ipv4.ip_forward": "1"}
        assert (host["CapAdd"], host["CapDrop"]) == (["NET_ADMIN"], ["CHOWN"]) or \
            (host["CapAdd"], host["CapDrop"]) == (["CAP_NET_ADMIN"], ["CAP_CHOWN"])
        assert (host["ReadonlyRootfs"], host["Isolation"]) == (True, "default")
        assert (host["Dns"], host["DnsSearch"], host["DnsOptions"]) == \
            (["192.0.2.53"], ["example.org"], ["ndots:2"])
        assert host["ExtraHosts"] == ["db:10.1.2.3"]
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
        assert (host["NanoCpus"], host["Memory"], host["MemoryReservation"]) == \
            (500_000_000, 64 << 20, 32 << 20)
        mounts = {m["Target"]: m for m in host["Mounts"]}
        assert mounts["/b"] == {"Type": "bind", "Source": str(tmp_path), "Target": "/b",
                                "ReadOnly": True}
        assert mounts["/v"]["VolumeOptions"]["DriverConfig"] == \
            {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}
        assert mounts["/t"]["TmpfsOptions"] == {"SizeBytes": 1 << 20, "Mode": 0o1770}
        assert engine.volumes.get(vol).attrs["Labels"] == {"k": "v"}
        code, out = ct.exec_run(["sh", "-c", "cat /etc/resolv.conf; grep db /etc/hosts; "
                                 "ulimit -n; cat /b/hello; touch /x 2>&1; mount"])
        text = out.decode()
        assert "nameserver 192.0.2.53" in text and "search example.org" in text
        assert "options ndots:2" in text and "10.1.2.3\tdb" in text
        assert "\n1024\n" in text and "from the node" in text and "Read-only file system" in text
        assert "tmpfs on /v type tmpfs" in text
        assert "tmpfs on /t type tmpfs" in text and "size=1024k,mode=1770" in text
        c.wait_for(lambda: (ct.reload() or ct.attrs["State"].get("Health", {}).get("Status"))
                   == "healthy", 30, "the health check the spec gave running")
    finally:
        c.docker(m1, "service", "rm", "limits")
        c.wait_for(lambda: not engine.containers.list(
            all=True, filters={"label": "com.docker.swarm.service.name=limits"}), 30,
            "the task container removed")
        engine.volumes.get(vol).remove(force=True)


@pytest.mark.parametrize("flags, field", [
    (["--isolation", "hyperv"], "ContainerSpec.Isolation 'hyperv'"),
    (["--sysctl", "kernel.panic=1"], "ContainerSpec.Sysctls: sysctl 'kernel.panic' is not allowed"),
    (["--cap-add", "CAP_FLY"], "ContainerSpec.CapabilityAdd: unknown capability"),
    (["--mount", "type=bind,source=relative,target=/x"], "needs an absolute Source path"),
    (["--generic-resource", "gpu=1"], "GenericResources: generic resources are not supported"),
])
def test_fields_that_cannot_be_honoured_are_refused_with_a_400_naming_them(cluster, flags, field):
    c, m1, _ = cluster
    r = c.docker(m1, "service", "create", "-d", "--name", "refused", *flags, TASK_IMAGE,
                 "true", check=False)
    assert r.returncode != 0 and field in r.stderr, r.stderr
    assert "refused" not in c.docker(m1, "service", "ls", "--format", "{{.Name}}").stdout


def test_unknown_fields_are_dropped_with_a_warning_never_stored(cluster):
    c, m1, _ = cluster
    api = c.sdk(m1).api
    tpl = dt.TaskTemplate(dt.ContainerSpec(TASK_IMAGE, ["sleep", "3600"]))
    tpl["ContainerSpec"]["OomScoreAdj"] = 500  # API 1.46: unknown to 1.41
    tpl["Placement"] = {"Constraints": [], "Spraed": []}
    created = api.create_service(tpl, name="unknown")
    assert sorted(created["Warnings"]) == sorted(
        f"unknown field {p} ignored: it is not part of a Docker API 1.41 service spec, so "
        "swarmkit-py did not store it"
        for p in ("TaskTemplate.ContainerSpec.OomScoreAdj", "TaskTemplate.Placement.Spraed"))
    svc = api.inspect_service(created["ID"])
    spec = svc["Spec"]["TaskTemplate"]
    assert "OomScoreAdj" not in spec["ContainerSpec"] and "Spraed" not in spec["Placement"]
    body = dict(svc["Spec"], Colour="blue")
    resp = api._result(api._post_json(api._url("/services/{0}/update", created["ID"]),
                                      data=body, params={"version": svc["Version"]["Index"]}),
                       json=True)
    assert resp["Warnings"] == ["unknown field Colour ignored: it is not part of a Docker API "
                                "1.41 service spec, so swarmkit-py did not store it"]
    assert "Colour" not in api.inspect_service(created["ID"])["Spec"]


def test_jobs_complete_and_force_update_runs_them_again(cluster):
    c, m1, _ = cluster
    r = c.docker(m1, "service", "create", "--name", "job", "--mode", "replicated-job",
                 "--replicas", "3", "--max-concurrent", "2", TASK_IMAGE, "true", timeout=90)
    assert "job complete" in r.stdout
    ps = c.docker(m1, "service", "ps", "job", "--format", "{{.DesiredState}} {{.CurrentState}}")
    states = ps.stdout.split("\n")
    assert len([s for s in states if s.startswith("Complete Complete")]) == 3, ps.stdout
    assert "(3/3 completed)" in c.docker(m1, "service", "ls", "--filter", "mode=replicated-job",
                                         "--format", "{{.Replicas}}").stdout
    c.docker(m1, "service", "update", "--force", "job", timeout=90)
    svc = c.sdk(m1).api.inspect_service("job")
    assert svc["JobStatus"]["JobIteration"] == {"Index": 1}
    assert svc["Spec"]["TaskTemplate"]["ForceUpdate"] == 1
    assert svc["Spec"]["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 3}}
    tasks = c.sdk(m1).api.tasks(filters={"service": "job"})
    runs = sorted((t["JobIteration"]["Index"], t["Status"]["State"]) for t in tasks)
    assert runs == [(0, "complete")] * 3 + [(1, "complete")] * 3
    r = c.docker(m1, "service", "create", "--name", "gjob", "--mode", "global-job",
                 TASK_IMAGE, "true", timeout=90)
    assert "job complete" in r.stdout
    assert "(1/1 completed)" in c.docker(m1, "service", "ls", "--filter", "name=gjob",
                                         "--format", "{{.Replicas}}").stdout


def test_swarm_inspect_shows_the_settings_in_effect_and_refuses_ca_rotation(cluster):
    c, m1, _ = cluster
    api = c.sdk(m1).api
    swarm = api.inspect_swarm()
    assert (swarm["DefaultAddrPool"], swarm["SubnetSize"], swarm["DataPathPort"]) == \
        (["10.0.0.0/8"], 24, 4789)
    assert swarm["Spec"]["CAConfig"] == {"NodeCertExpiry": 90 * 24 * 3600 * 10**9,
                                         "ForceRotate": 0}
    assert swarm["Spec"]["Raft"]["SnapshotInterval"] > 0 and swarm["Spec"]["Raft"]["ElectionTick"] > 0
    r = c.docker(m1, "swarm", "ca", "--rotate", "-d", check=False)
    assert r.returncode != 0 and "CAConfig.ForceRotate" in r.stderr, r.stderr
    c.docker(m1, "swarm", "update", "--cert-expiry", "48h")
    assert api.inspect_swarm()["Spec"]["CAConfig"]["NodeCertExpiry"] == 48 * 3600 * 10**9


def test_a_full_service_spec_reads_back_as_written(cluster):
    """Round trip through the SDK: every TaskTemplate field the SDK can express, then the
    spec inspect returns compared with the one sent, and the parts the CLI cannot set checked
    on the container."""
    c, m1, engine = cluster
    api = c.sdk(m1).api
    (port,) = free_ports(1)
    container = dt.ContainerSpec(
        TASK_IMAGE, ["sleep", "3600"], args=None, hostname="rt", env=["A=1"], workdir="/tmp",
        user="0", labels={"c": "1"}, mounts=[dt.Mount("/scratch", None, type="tmpfs",
                                                      tmpfs_size=65536, tmpfs_mode=0o700)],
        stop_grace_period=4_000_000_000, tty=False, groups=["10"], open_stdin=True,
        read_only=True, stop_signal="SIGTERM", healthcheck=dt.Healthcheck(
            test=["CMD", "true"], interval=1_000_000_000, timeout=2_000_000_000, retries=2,
            start_period=3_000_000_000),
        hosts={"api": "10.9.9.9"}, dns_config=dt.DNSConfig(["192.0.2.1"], ["svc.local"],
                                                           ["timeout:2"]),
        privileges=dt.Privileges(selinux_type="svirt_lxc_net_t", selinux_level="s0:c1,c2"),
        isolation="default", init=True, sysctls={"net.core.somaxconn": "512"},
        cap_add=["SYS_TIME"], cap_drop=["MKNOD"])
    container["Ulimits"] = [{"Name": "nproc", "Soft": 64, "Hard": 128}]  # not an SDK argument
    template = dt.TaskTemplate(
        container, resources=dt.Resources(cpu_limit=250_000_000, mem_limit=32 << 20,
                                          cpu_reservation=10_000_000, mem_reservation=8 << 20),
        restart_policy=dt.RestartPolicy("on-failure", 2_000_000_000, 3, 60_000_000_000),
        placement=dt.Placement(constraints=["node.role==manager"], maxreplicas=2,
                               platforms=[("x86_64", "linux")]),
        log_driver=dt.DriverConfig("json-file", {"max-file": "2"}), force_update=7)
    sent = {"Name": "roundtrip", "Labels": {"team": "a"}, "TaskTemplate": template,
            "Mode": {"Replicated": {"Replicas": 1}},
            "UpdateConfig": dict(dt.UpdateConfig(parallelism=2, delay=1_000_000_000,
                                                 failure_action="rollback",
                                                 monitor=2_000_000_000,
                                                 max_failure_ratio=0.5, order="start-first")),
            "RollbackConfig": dict(dt.RollbackConfig(parallelism=1, failure_action="continue",
                                                     order="stop-first")),
            "EndpointSpec": dict(dt.EndpointSpec("vip", {port: (80, "tcp", "host")}))}
    sid = api.create_service(template, name=sent["Name"], labels=sent["Labels"],
                             mode=dt.ServiceMode("replicated", 1),
                             update_config=sent["UpdateConfig"],
                             rollback_config=sent["RollbackConfig"],
                             endpoint_spec=sent["EndpointSpec"])["ID"]
    got = api.inspect_service(sid)["Spec"]
    assert got == _json(sent)
    ct = task_container(c, engine, "roundtrip")
    cfg, host = ct.attrs["Config"], ct.attrs["HostConfig"]
    assert host["SecurityOpt"] == ["label=type:svirt_lxc_net_t", "label=level:s0:c1,c2"]
    assert (cfg["OpenStdin"], cfg["StopTimeout"], host["Mounts"][0]["TmpfsOptions"]) == \
        (True, 4, {"SizeBytes": 65536, "Mode": 0o700})
    assert host["ExtraHosts"] == ["api:10.9.9.9"] and host["Sysctls"] == {"net.core.somaxconn": "512"}
    assert ct.attrs["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": str(port)}]}


def _json(value):
    """What the SDK's dict subclasses put on the wire; a null is an absent field (Go)."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value
