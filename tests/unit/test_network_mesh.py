"""The mesh's NAT rules: their shape, and that the kernel's own parser takes them (in a
private network namespace, so nothing of the machine's tables is touched)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from swarmkit_py.worker.network import dns, mesh


def _rules():
    return mesh.MeshRules(
        ingress={(8080, "tcp"): ["10.0.0.3:8080", "10.0.0.4:8080", "10.0.0.5:8080"]},
        vips={("10.0.1.2", "skov-abc"): ["10.0.1.5", "10.0.1.6"]},
        snat={"skov-abc": "10.0.1.3"})


def test_round_robin_rules_and_vips_before_the_mesh():
    text = mesh.nat_table(_rules())
    lines = text.splitlines()
    dnat = [line for line in lines if "--to-destination 10.0.0." in line]
    assert "--every 3 --packet 0" in dnat[0] and "--every 2 --packet 0" in dnat[1]
    assert "statistic" not in dnat[2] and all("-p tcp" in line for line in dnat)
    jumps = [line for line in lines if line.startswith("-A SKPY-PREROUTING")]
    assert "-d 10.0.1.2/32" in jumps[0] and "--dport 8080" in jumps[1]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_the_kernel_accepts_the_rules_in_a_private_namespace():
    text = mesh.nat_table(_rules()) + mesh.filter_table()
    p = subprocess.run(["unshare", "--net", "iptables-restore", "--test"], input=text,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_dns_records_follow_the_map():
    netmap = {
        "networks": [{"id": "n1", "subnet": "10.0.1.0/24"}, {"id": "n2", "subnet": "10.0.2.0/24"}],
        "services": [{"id": "s1", "name": "web", "mode": "vip", "vips": {"n1": "10.0.1.2"}},
                     {"id": "s2", "name": "db", "mode": "dnsrr", "vips": {}}],
        "tasks": [
            {"id": "t1", "name": "web.1.t1", "service_id": "s1", "up": True,
             "addrs": {"n1": "10.0.1.5"}, "aliases": {"n1": ["www"]}},
            {"id": "t2", "name": "web.2.t2", "service_id": "s1", "up": False,
             "addrs": {"n1": "10.0.1.6"}, "aliases": {}},
            {"id": "t3", "name": "db.1.t3", "service_id": "s2", "up": True,
             "addrs": {"n2": "10.0.2.5"}, "aliases": {}},
        ],
    }
    rec = dns.build_records(netmap)
    assert rec.network_of("10.0.1.77") == "n1"
    assert rec.lookup("n1", "web.") == ["10.0.1.2"]
    assert rec.lookup("n1", "WWW") == ["10.0.1.2"]
    assert rec.lookup("n1", "tasks.web") == ["10.0.1.5"]  # t2 is not running
    assert rec.lookup("n1", "web.2.t2") == ["10.0.1.6"]
    assert rec.lookup("n2", "db") == ["10.0.2.5"]
    assert rec.lookup("n1", "db") is None  # another network: not visible


def test_mesh_bench_load_generator_against_a_loopback_server(tmp_path):
    """The half of bench/mesh_bench.py that runs inside a lab host, on loopback, so it does
    not rot between lab runs."""
    import json
    import socket
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "index.html").write_text("ok")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time
        for _ in range(100):
            with socket.socket() as c:
                if c.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        out = subprocess.run([sys.executable, str(root / "bench" / "mesh_bench.py"), "--client",
                              "127.0.0.1", "--port", str(port), "--requests", "30",
                              "--seconds", "10", "--concurrency", "3"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        assert result["requests"] == 30 and result["errors"] == 0 and result["rps"] > 0
        assert result["p99_ms"] >= result["p50_ms"] > 0
    finally:
        server.kill()
        server.wait()
