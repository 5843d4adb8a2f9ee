"""Networking end to end on a real lab: published ports, overlays, service discovery, the mesh.

lab.up 4 hosts (each its own network namespace and dockerd with networking on) -> bootstrap
one manager + 3 workers -> with the real docker CLI and curl, as a user would:
- the demo service (3 replicas, -p 8080:8080): every host's port answers, and all three
  replicas' hostnames come back over repeated requests (the routing mesh, in the kernel);
- two services on one overlay on different hosts talk by service name (VIP) and by
  `tasks.<service>`; a service on another overlay can neither resolve nor reach them;
- host-mode ports: a fifth replica of a host-mode service on 4 nodes stays pending with
  Swarm's reason, and each node's own port answers;
- `--publish-add` rolls the tasks (the endpoint is part of a task);
- bad input: overlapping subnet, removing a network in use, unknown driver: Docker's codes;
- a compose stack (web with a published port, a config page and a secret; a worker calling it
  by name; a global service): every host serves the page, the secret is on a tmpfs in its
  task and on no host's disk, a redeploy rolls a new page, one `stack rm` leaves nothing;
- crash a host: requests to the surviving hosts are counted while it dies; once the manager
  has it Down the mesh no longer sends to its tasks and every request succeeds.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import docker
import pytest

from tests.labkit import LAB_MARKS, invoke, operator_env, running_lab

pytestmark = [*LAB_MARKS, pytest.mark.timeout(1200)]

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
IMAGE = "swarmkit-py/busybox:latest"
HTTPD = "mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p {port} -h /tmp/www"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lab_name):
    with running_lab(tmp_path_factory.mktemp("net"), lab_name("net"), 4) as lab:
        yield lab


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("operator")
    base = operator_env(tmp)
    invoke(base, "bootstrap", "--managers", "1", inventory=lab.inventory_path, timeout=900)
    out = invoke(base, "docker-env", inventory=lab.inventory_path).stdout
    denv = {**base, "DOCKER_CONFIG": str(Path(base["SWARMKIT_DEPLOY_DIR"]) / "docker-config")}
    for k, v in re.findall(r"^export (\w+)=(.*)$", out, re.M):
        denv[k] = v.strip("'\"")
    return denv


@pytest.fixture(scope="module")
def hosts(lab):
    return {h.name: h.address for h in lab.hosts()}


def dk(env, *args, check=True, timeout=120) -> subprocess.CompletedProcess:
    r = subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {r.stderr}")
    return r


def curl(addr: str, port: int, timeout: float = 2) -> str | None:
    r = subprocess.run(["curl", "-s", "-m", str(timeout), f"http://{addr}:{port}/"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def in_task(lab, env, service: str, script: str) -> str:
    """Run `sh -c script` in a running task container of `service`, on its host."""
    r = dk(env, "service", "ps", service, "--filter", "desired-state=running",
           "--format", "{{.Node}}")
    host = r.stdout.split()[0]
    cmd = (f"docker exec $(docker ps -q -f label=com.docker.swarm.service.name={service} "
           f"| head -1) sh -c {sh_quote(script)}")
    return lab.ssh(host, cmd, timeout=30)[1]


def sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def wait(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


HTTP_GET = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 3 {target} {port} | tail -1'


def test_demo_port_answers_on_every_host_from_every_replica(env, hosts):
    dk(env, "service", "create", "--name", "demo", "--replicas", "3", "--detach=false",
       "--publish", "8080:8080", IMAGE, "sh", "-c", HTTPD.format(port=8080), timeout=180)
    ls = dk(env, "service", "ls").stdout
    assert "*:8080->8080/tcp" in ls
    for name, addr in hosts.items():
        seen = set()
        for _ in range(9):
            answer = wait(lambda addr=addr: curl(addr, 8080), 20, f"{name}:8080 to answer")
            seen.add(answer)
        assert len(seen) == 3, f"{name}: replicas seen {seen}"


def test_services_on_one_overlay_find_each_other_and_others_cannot(lab, env):
    dk(env, "network", "create", "-d", "overlay", "back")
    dk(env, "network", "create", "-d", "overlay", "--subnet", "10.0.90.0/24", "other")
    dk(env, "service", "create", "--name", "api", "--replicas", "2", "--network", "back",
       "--detach=false", IMAGE, "sh", "-c", HTTPD.format(port=80), timeout=180)
    dk(env, "service", "create", "--name", "client", "--network", "back", "--detach=false",
       "--constraint", "node.hostname!=h1", IMAGE, "sleep", "100000", timeout=180)
    dk(env, "service", "create", "--name", "stranger", "--network", "other", "--detach=false",
       IMAGE, "sleep", "100000", timeout=180)
    nodes = set(dk(env, "service", "ps", "api", "client", "--format", "{{.Node}}").stdout.split())
    assert len(nodes) >= 2, "the test needs the services on different hosts"
    api_hosts = set()
    for _ in range(6):
        api_hosts.add(in_task(lab, env, "client", HTTP_GET.format(target="api", port=80)).strip())
    assert len(api_hosts - {""}) == 2, api_hosts  # the VIP balances over both tasks
    out = in_task(lab, env, "client", "nslookup tasks.api")
    assert len(re.findall(r"Address: 10\.", out)) == 2, out
    assert in_task(lab, env, "client", HTTP_GET.format(target="tasks.api", port=80)).strip()
    vip = dk(env, "service", "inspect", "api", "--format",
             "{{(index .Endpoint.VirtualIPs 0).Addr}}").stdout.strip().split("/")[0]
    assert "SERVFAIL" in in_task(lab, env, "stranger", "nslookup api 2>&1") or \
        "can't find" in in_task(lab, env, "stranger", "nslookup api 2>&1")
    assert in_task(lab, env, "stranger", HTTP_GET.format(target=vip, port=80)).strip() == ""


def test_host_mode_ports_collide_nowhere_and_answer_on_their_node(env, hosts):
    dk(env, "service", "create", "--name", "hostp", "--replicas", "5", "--detach=true",
       "--publish", "mode=host,target=8081,published=9090", IMAGE, "sh", "-c",
       HTTPD.format(port=8081))
    reason = wait(lambda: [e for e in dk(env, "service", "ps", "hostp", "--no-trunc",
                                         "--format", "{{.Error}}").stdout.splitlines() if e],
                  60, "a pending reason")
    assert "host-mode port already in use on 4 nodes" in reason[0]
    for name, addr in hosts.items():
        assert wait(lambda addr=addr: curl(addr, 9090), 30, f"{name}:9090"), name
    dk(env, "service", "rm", "hostp")


def test_publish_add_rolls_the_tasks(env, hosts):
    dk(env, "service", "create", "--name", "late", "--detach=false", IMAGE, "sh", "-c",
       HTTPD.format(port=8082), timeout=180)
    before = dk(env, "service", "ps", "late", "-q").stdout.split()
    dk(env, "service", "update", "--publish-add", "8082:8082", "--detach=false", "late",
       timeout=180)
    after = dk(env, "service", "ps", "late", "-q", "--filter", "desired-state=running").stdout.split()
    assert set(after) - set(before), "no new task after --publish-add"
    addr = next(iter(hosts.values()))
    assert wait(lambda: curl(addr, 8082), 30, "the added port")
    dk(env, "service", "rm", "late")


def test_bad_network_requests_get_dockers_codes(env):
    client = docker.DockerClient(base_url=env["DOCKER_HOST"], tls=docker.tls.TLSConfig(
        client_cert=(f"{env['DOCKER_CERT_PATH']}/cert.pem", f"{env['DOCKER_CERT_PATH']}/key.pem"),
        ca_cert=f"{env['DOCKER_CERT_PATH']}/ca.pem", verify=True), version="1.41")
    client.api.trust_env = False  # REQUESTS_CA_BUNDLE must not replace the cluster's CA
    with pytest.raises(docker.errors.APIError) as e:
        client.networks.create("clash", driver="overlay", ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet="10.0.90.0/25")]))
    assert e.value.status_code == 400 and "overlaps network 'other'" in str(e.value)
    with pytest.raises(docker.errors.APIError) as e:
        client.networks.get("back").remove()
    assert e.value.status_code == 400 and "in use by service" in str(e.value)
    with pytest.raises(docker.errors.NotFound) as e:
        client.networks.create("weird", driver="weave")
    assert 'plugin "weave" not found' in str(e.value)
    r = dk(env, "network", "create", "-d", "overlay", "back", check=False)
    assert r.returncode != 0 and "already exists" in r.stderr


def test_a_second_bootstrap_finds_the_hosts_ready_for_overlays(lab, env):
    """The role's overlay check passes on hosts whose VXLAN sockets are already open (the
    kernel's, with no owning process) and changes nothing."""
    out = invoke(env, "bootstrap", "--managers", "1", inventory=lab.inventory_path,
                 timeout=900).stdout
    assert re.search(r"^changed=0 failed=0", out, re.M), out[-3000:]


STACK = """
version: "3.8"
services:
  web:
    image: swarmkit-py/busybox:latest
    command: ["sh", "-c", "test -s /run/secrets/db_pw && exec httpd -f -p 80 -h /www"]
    ports: ["8088:80"]
    configs: [{source: PAGE, target: /www/index.html}]
    secrets: [db_pw]
    networks: [back]
    stop_grace_period: 1s
    deploy: {replicas: 2}
  worker:
    image: swarmkit-py/busybox:latest
    command: ["sh", "-c", "while true; do wget -qO /tmp/got http://web/ && mv /tmp/got /tmp/last; sleep 0.5; done"]
    networks: [back]
    stop_grace_period: 1s
  agent:
    image: swarmkit-py/busybox:latest
    command: ["sleep", "100000"]
    stop_grace_period: 1s
    deploy: {mode: global}
networks:
  back: {}
configs:
  PAGE: {file: ./index.html}
secrets:
  db_pw: {file: ./pw.txt}
"""


def on_host(lab, host: str, cmd: str) -> str:
    code, out, err = lab.ssh(host, cmd, timeout=30)
    assert code == 0, f"{host}: {cmd}: {err}"
    return out.strip()


def task_container(lab, env, service: str) -> tuple[str, str]:
    """(host, container id) of a running task of `service`."""
    host = dk(env, "service", "ps", service, "--filter", "desired-state=running",
              "--format", "{{.Node}}").stdout.split()[0]
    cid = on_host(lab, host, f"docker ps -q -f label=com.docker.swarm.service.name={service}")
    return host, cid.split()[0]


def test_compose_stack_across_hosts_secret_in_memory_only_and_nothing_left(lab, env, hosts,
                                                                          tmp_path):
    """The issue's compose test: `stack deploy` of a web service (published port, a config as
    its index page, a secret it needs to start), a worker calling it by name over the stack's
    overlay, and a global service; every host serves the page; the secret is read inside the
    task on its node, sits on a tmpfs and nowhere on any host's disk; a redeploy with a new
    config rolls the page everywhere; one `stack rm` leaves nothing on any host."""
    import secrets as pysecrets

    value = f"pw-{pysecrets.token_hex(16)}"
    page1, page2 = f"<h1>{pysecrets.token_hex(6)}</h1>", f"<h1>{pysecrets.token_hex(6)}</h1>"
    (tmp_path / "pw.txt").write_text(value)
    (tmp_path / "index.html").write_text(page1)
    compose = tmp_path / "compose.yml"
    compose.write_text(STACK.replace("PAGE", "page"))
    out = dk(env, "stack", "deploy", "-c", str(compose), "st").stdout
    assert "Creating service st_web" in out and "Creating secret st_db_pw" in out
    want = sorted(["st_web 2/2", "st_worker 1/1", f"st_agent {len(hosts)}/{len(hosts)}"])
    wait(lambda: sorted(dk(env, "stack", "services", "st", "--format",
                           "{{.Name}} {{.Replicas}}").stdout.splitlines()) == want, 180,
         f"the stack converged ({want})")

    answers: dict[str, str] = {}

    def pages(expected: str) -> bool:  # each host's published port, from the host itself
        for h, addr in hosts.items():
            for _ in range(2):
                answers[h] = on_host(lab, h, f"curl -s -m 3 http://{addr}:8088/ || true")
                if answers[h] != expected:
                    return False
        return True

    try:
        wait(lambda: pages(page1), 60, "the page from every host")
    except AssertionError:
        ps = dk(env, "stack", "ps", "st", "--no-trunc", "--format",
                "{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}").stdout
        raise AssertionError(f"hosts answered {answers}; tasks:\n{ps}") from None
    host, cid = task_container(lab, env, "st_web")
    assert on_host(lab, host, f"docker exec {cid} cat /run/secrets/db_pw") == value
    fs = on_host(lab, host, f"docker exec {cid} awk '$2==\"/run/secrets/db_pw\"{{print $3}}' "
                            "/proc/mounts")
    assert fs == "tmpfs", fs
    for h in hosts:  # everything a host writes to disk lives under its state dir
        r = subprocess.run(["grep", "-rlF", "--", value, str(lab.host_dir(h))],
                           capture_output=True, text=True)
        assert r.stdout == "", f"the secret is on {h}'s disk: {r.stdout}"
    whost, wcid = task_container(lab, env, "st_worker")
    wait(lambda: on_host(lab, whost, f"docker exec {wcid} cat /tmp/last || true") == page1, 30,
         "the worker reaching the web by its name")

    # a changed page under a new config name (configs are immutable, as in Swarm)
    (tmp_path / "index.html").write_text(page2)
    compose.write_text(STACK.replace("PAGE", "page_v2"))
    out = dk(env, "stack", "deploy", "-c", str(compose), "st").stdout
    assert "Creating config st_page_v2" in out and "Updating service st_web" in out
    wait(lambda: pages(page2), 120, "the new page from every host")
    wait(lambda: on_host(lab, whost, f"docker exec {wcid} cat /tmp/last || true") == page2, 30,
         "the worker reading the new page")

    out = dk(env, "stack", "rm", "st")
    assert "Removing network st_back" in out.stdout and not out.stderr, out
    for kind in ("service", "network", "secret", "config"):
        left = [n for n in dk(env, kind, "ls", "--format", "{{.Name}}").stdout.split()
                if n.startswith("st_")]
        assert left == [], (kind, left)
    check = ("docker ps -aq -f label=com.docker.stack.namespace=st; "
             "docker network ls -q -f name=st_; "
             "docker volume ls -q -f label=com.swarmkit-py.files.task.id")
    wait(lambda: all(on_host(lab, h, check) == "" for h in hosts), 60,
         "no container, network or secrets volume of the stack on any host")


def test_crash_a_host_and_the_mesh_stops_sending_to_it(lab, env, hosts):
    tasks = dk(env, "service", "ps", "demo", "--filter", "desired-state=running",
               "--format", "{{.Node}}").stdout.split()
    victim = next(h for h in tasks if h != "h1")  # h1 is the only manager
    survivors = [a for h, a in hosts.items() if h != victim]
    lab.crash(victim)
    t0 = time.monotonic()
    failures = total = 0
    down_at = None
    while time.monotonic() - t0 < 30:
        for addr in survivors:
            total += 1
            if curl(addr, 8080, timeout=1) is None:
                failures += 1
        status = dk(env, "node", "inspect", victim, "--format", "{{.Status.State}}").stdout.strip()
        if down_at is None and status == "down":
            down_at = time.monotonic() - t0
            break
    assert down_at is not None, "the crashed host was never shown Down"
    time.sleep(1.0)  # the manager knows: the next map takes its tasks out of the backends
    after = [curl(addr, 8080, timeout=2) for addr in survivors for _ in range(6)]
    print(f"crash of {victim}: {failures} of {total} requests failed before it was Down "
          f"({down_at:.1f}s); after: {sum(a is None for a in after)} of {len(after)} failed")
    assert all(after), "requests to surviving hosts failed after the crashed host was Down"
