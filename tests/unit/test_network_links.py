"""The VXLAN plumbing (pyroute2) on real kernel links, in a private network namespace made by
`unshare --net` for the test (nothing of the machine's own links is touched)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root for a private network namespace")

SCRIPT = textwrap.dedent("""
    import json, subprocess
    from pyroute2 import IPRoute
    from swarmkit_py.worker.network import links
    with IPRoute() as ipr:
        ipr.link("add", ifname="skov-test", kind="bridge")
        ipr.link("add", ifname="v0", kind="veth", peer="v1")
        v0 = ipr.link_lookup(ifname="v0")[0]
        ipr.addr("add", index=v0, address="10.99.0.2", prefixlen=24)
        ipr.link("set", index=v0, state="up")
        br = ipr.link_lookup(ifname="skov-test")[0]
        ipr.addr("add", index=br, address="10.0.5.1", prefixlen=24)
        ipr.link("set", index=br, state="up")
    links.ensure_vxlan("skov-test", 4097, "10.99.0.2")
    links.ensure_vxlan("skov-test", 4097, "10.99.0.2")  # idempotent
    links.ensure_vxlan("skov-test", 4098, "10.99.0.2")
    links.set_bridge_identity("skov-test", "10.0.5.3", "10.0.5.0/24")
    links.set_extra_addresses("skov-test", ["10.0.5.1", "10.0.5.3"], ["10.0.5.9"])
    out = {"first": links.program_peers(4097, {"10.0.5.4": "10.99.0.3", "10.0.5.5": "10.99.0.4"}),
           "second": links.program_peers(4097, {"10.0.5.4": "10.99.0.3", "10.0.5.6": "10.99.0.5"}),
           "again": links.program_peers(4097, {"10.0.5.4": "10.99.0.3", "10.0.5.6": "10.99.0.5"}),
           "removed": links.remove_vxlans_except({4097})}
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
    out = {"nothing": links.remove_vxlans_except({9}), "imported": "pyroute2" in sys.modules}
    subprocess.run("ip link add skvx-8 type bridge", shell=True, check=True)
    out["stale"] = links.remove_vxlans_except({9})
    out["left"] = subprocess.run("ip -o link show", shell=True, capture_output=True, text=True).stdout
    print(json.dumps(out))
""")


def test_nothing_to_remove_is_known_without_pyroute2():
    """A fresh host's first network map: no stale VXLAN device, and pyroute2 (~0.1 s of CPU to
    import) is not loaded to learn that (issue 13); a stale one is still removed."""
    out = in_new_netns(LOOK_ONLY)
    assert out["nothing"] == [] and out["imported"] is False
    assert out["stale"] == ["skvx-8"] and "skvx-9" in out["left"] and "skvx-8" not in out["left"]


LIGHT = textwrap.dedent("""
    import json, subprocess, sys
    from swarmkit_py.worker.network import links
    subprocess.run("ip link add skov-test type bridge && ip link add v0 type veth peer name v1 && "
                   "ip addr add 10.99.0.2/24 dev v0 && ip link set v0 up && ip addr add 10.0.5.1/24 dev skov-test && "
                   "ip link set skov-test up",
                   shell=True, check=True)
    links.ensure_vxlan("skov-test", 4097, "10.99.0.2")
    links.set_bridge_identity("skov-test", "10.0.5.3", "10.0.5.0/24")
    out = {"added": links.program_peers(4097, {"10.0.5.4": "10.99.0.3"}),
           "heavy": sorted(m for m in sys.modules if m.startswith(("pyroute2.ndb", "pyroute2.ipdb", "pyroute2.nftables",
                                                                   "pyroute2.plan9", "sqlite3")))}
    from pyroute2 import NDB, IPRoute  # the rest of the package, when anything in the process asks for it
    from pyroute2.iproute.linux import IPRoute as linux_iproute
    out["later"] = [NDB.__module__, IPRoute is linux_iproute]
    try:
        from pyroute2 import NoSuchName
    except ImportError as exc:
        out["missing"] = str(exc).split(" (")[0]
    print(json.dumps(out))
""")


def test_the_overlay_plumbing_loads_only_pyroute2_s_iproute():
    """`import pyroute2` runs an __init__ that imports the whole library (NDB with sqlite3,
    IPDB, nftables, plan9...: 10.7 MB of RSS); the links need IPRoute only (126 modules,
    ~5 MB). Every worker of a swarm with a published port runs them (the routing mesh), and a
    worker must stay under 50 MB (issue 13). The package's own names still import, on demand,
    for any other code in the process."""
    out = in_new_netns(LIGHT)
    assert out["added"] == [1, 0] and out["heavy"] == []
    assert out["later"] == ["pyroute2.ndb.main", True]
    assert out["missing"] == "cannot import name 'NoSuchName' from 'pyroute2'"
