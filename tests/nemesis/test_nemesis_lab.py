"""The nemesis suite's CI part (issue 10): a lab of 5 hosts, all managers, formed with
`invoke bootstrap`; h5's agent state dir on a small disk. One round of a fixed-seed schedule
that injects every fault kind once -- power cut + reboot, the leader isolated, a minority cut
off, a 2/3 split, a frozen host (mostly the leader), h5's disk filled -- while a client on
every manager runs read-then-compare-and-set and reads on a service label through the Docker
API. Then: the history is linearizable, every manager recovered, the manager with the full
disk said so, and the history and its timeline were saved. Long random schedules:
scripts/nemesis.sh --minutes 30."""

from __future__ import annotations

import json
from pathlib import Path

from swarmkit_py.testing.nemesis.cluster import LabCluster
from swarmkit_py.testing.nemesis.faults import KINDS
from swarmkit_py.testing.nemesis.runner import run
from tests.labkit import LAB_MARKS, operator_env, running_lab

pytestmark = LAB_MARKS

SEED = 20261203


def test_a_fixed_seed_schedule_of_every_fault_is_linearizable(tmp_path_factory, lab_name):
    tmp = tmp_path_factory.mktemp("nemesis")
    out = tmp / "report"
    with running_lab(tmp, lab_name("nemesis"), 5, disks={"h5": 64}) as lab:
        cluster = LabCluster(lab, operator_env(tmp))
        cluster.bootstrap(5)
        report = run(cluster, out, SEED, rounds=1, round_seconds=0, kinds=list(KINDS), each_once=True,
                     disk_hosts=["h5"], hold=(1.5, 3.0), quiet=(0.5, 1.5))
    r = report.rounds[0]
    detail = f"{(out / 'report.md').read_text()}\nhistory {r.history}, timeline {r.plot}"
    assert not r.nemesis_errors, detail
    assert r.faults == {k: 1 for k in KINDS}, detail
    assert r.valid is True, detail
    assert r.recovered_s is not None, detail
    assert r.counts.get("cas_ok", 0) >= 20 and r.counts.get("read_ok", 0) >= 50, r.counts  # the clients worked
    assert any("disk is full" in e for e in r.disk_full_errors), r.disk_full_errors
    events = [json.loads(line) for line in Path(r.history).read_text().splitlines()]
    assert {e["value"]["fault"] for e in events if e["process"] == "nemesis"} == set(KINDS)
    assert Path(r.plot).stat().st_size > 10_000
