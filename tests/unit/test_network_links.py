"""The VXLAN plumbing (iproute2's ip and bridge) on real kernel links, in a private network
namespace made by `unshare --net` for the test (nothing of the machine's own links is touched)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root for a private network namespace")

SETUP = ("ip link add skov-test type bridge && ip link add v0 type veth peer name v1 && "
         "ip addr add 10.99.0.2/24 dev v0 && ip link set v0 up && ip addr add 10.0.5.1/24 dev skov-test && "
         "ip link set skov-test up")
"""A bridge with the gateway's address and a link to the other nodes, as the engine and the
host have them before the links are programmed."""

SCRIPT = f"SETUP = {SETUP!r}\n" + textwrap.dedent("""
    import json, subprocess
    from swarmkit_py.worker.network import links
    subprocess.run(SETUP, shell=True, check=True)
    try:
        links.ensure_vxlan("skov-none", 4096, "10.99.0.2")
    except links.LinkError as exc:
        missing = str(exc)
    links.ensure_vxlan("skov-test", 4097, "10.99.0.2")
    links.ensure_vxlan("skov-test", 4097, "10.99.0.2")  # idempotent
    links.ensure_vxlan("skov-test", 4098, "10.99.0.2")
    links.set_bridge_identity("skov-test", "10.0.5.3", "10.0.5.0/24")
    links.set_extra_addresses("skov-test", ["10.0.5.1", "10.0.5.3"], ["10.0.5.9"])
    out = {"first": links.program_peers(4097, {"10.0.5.4": "10.99.0.3", "10.0.5.5": "10.99.0.4"}),
           "second": links.program_peers(4097, {"10.0.5.4": "10.99.0.3", "10.0.5.6": "10.99.0.5"}),
           "again": links.program_peers(4097, {"10.0.5.4": "10.99.0.3", "10.0.5.6": "10.99.0.5"}),
           "removed": links.remove_vxlans_except({4097}), "missing": missing}
    sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout
    out["fdb"] = sh("bridge fdb show dev skvx-4097")
    out["neigh"] = sh("ip neigh show dev skvx-4097")
    out["link"] = sh("ip -d link show skvx-4097")
    out["route"] = sh("ip route show dev skov-test")
    out["addr"] = sh("ip addr show skov-test")
    print(json.dumps(out))
""")


def in_new_netns(script: str) -> dict:
    """Run `script` in a network namespace of its own; the JSON it prints."""
    import json
    p = subprocess.run(["unshare", "--net", sys.executable, "-c", script], capture_output=True,
                       text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_vxlan_peers_bridge_identity_and_cleanup():
    out = in_new_netns(SCRIPT)
    assert out["first"] == [2, 0] and out["second"] == [1, 1] and out["again"] == [0, 0]
    assert out["missing"] == "bridge skov-none does not exist"
    assert out["removed"] == ["skvx-4098"]
    assert "02:42:0a:00:05:06 dst 10.99.0.5 self permanent" in out["fdb"]
    assert "02:42:0a:00:05:05" not in out["fdb"]
    assert "10.0.5.6 lladdr 02:42:0a:00:05:06 PERMANENT" in out["neigh"]
    assert "nolearning proxy" in out["link"] and "mtu 1450" in out["link"]
    assert "src 10.0.5.3" in out["route"]
    assert "link/ether 02:42:0a:00:05:03" in out["addr"] and "10.0.5.9/32" in out["addr"]


LOOK_ONLY = textwrap.dedent("""
    import json, subprocess, sys
    from swarmkit_py.worker.network import links
    subprocess.run("ip link add skvx-9 type bridge", shell=True, check=True)
    runs = []
    real = subprocess.run
    subprocess.run = lambda args, *a, **kw: runs.append(args) or real(args, *a, **kw)
    out = {"nothing": links.remove_vxlans_except({9}), "processes": len(runs)}
    subprocess.run = real
    subprocess.run("ip link add skvx-8 type bridge", shell=True, check=True)
    out["stale"] = links.remove_vxlans_except({9})
    out["left"] = subprocess.run("ip -o link show", shell=True, capture_output=True, text=True).stdout
    print(json.dumps(out))
""")


def test_nothing_to_remove_is_known_without_a_process():
    """A fresh host's first network map: no stale VXLAN device, learned from the kernel's list
    of names without starting a process (every agent asks at its first map); a stale one is
    still removed."""
    out = in_new_netns(LOOK_ONLY)
    assert out["nothing"] == [] and out["processes"] == 0
    assert out["stale"] == ["skvx-8"] and "skvx-9" in out["left"] and "skvx-8" not in out["left"]


MANY = f"SETUP = {SETUP!r}\n" + textwrap.dedent("""
    import json, subprocess, sys
    from swarmkit_py.worker.network import links
    subprocess.run(SETUP, shell=True, check=True)
    links.ensure_vxlan("skov-test", 4097, "10.99.0.2")
    runs = []
    real = subprocess.run
    def counted(args, *a, **kw):
        runs.append(args[0])
        return real(args, *a, **kw)
    subprocess.run = counted
    # a node's block of a /24 on another node: 254 peers, as the plane sends for node_ranges
    peers = {f"10.0.6.{i}": "10.99.0.3" for i in range(1, 255)}
    out = {"first": links.program_peers(4097, peers), "runs": len(runs)}
    runs.clear()
    peers = {f"10.0.6.{i}": "10.99.0.4" for i in range(1, 128)}  # half of them moved, the rest gone
    out["moved"] = links.program_peers(4097, peers)
    out["runs_moved"] = len(runs)
    sh = lambda c: real(c, shell=True, capture_output=True, text=True).stdout
    out["fdb"] = sh("bridge fdb show dev skvx-4097 | grep -c 'dst 10.99.0.4 self permanent'")
    out["fdb_old"] = sh("bridge fdb show dev skvx-4097 | grep -c 'dst 10.99.0.3' || true")
    out["neigh"] = sh("ip neigh show dev skvx-4097 | grep -c PERMANENT")
    out["netlink_libraries"] = sorted(m for m in sys.modules if m.split(".")[0] in ("pyroute2", "pyroute"))
    print(json.dumps(out))
""")


def test_a_map_of_many_peers_is_a_few_processes_and_no_netlink_library():
    """A node's block on another node is 254 peers: programmed with a handful of `ip` and
    `bridge` processes (two reads, a batch per kind of change), not one per entry; moving half
    of them and dropping the rest is as few. No netlink library is loaded into the agent
    (pyroute2's IPRoute was 4.8 MB of every agent's RSS, issue 13)."""
    out = in_new_netns(MANY)
    assert out["first"] == [254, 0] and out["runs"] <= 6
    assert out["moved"] == [127, 127] and out["runs_moved"] <= 6
    assert out["fdb"].strip() == "127" and out["fdb_old"].strip() == "0" and out["neigh"].strip() == "127"
    assert out["netlink_libraries"] == []
