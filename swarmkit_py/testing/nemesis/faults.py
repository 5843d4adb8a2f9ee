"""What the nemesis does to the lab, and how each fault is undone.

| kind               | start                                              | stop              |
|--------------------|----------------------------------------------------|-------------------|
| crash              | power cut of the leader's host (half the time) or  | boot it again     |
|                    | another manager's (`Lab.crash`: link down, kill)   | (`Lab.restart`)   |
| partition-leader   | the leader alone on one side                       | `Lab.heal`        |
| partition-minority | one or two followers cut off from the rest         | `Lab.heal`        |
| partition-halves   | a random 2 / 3 split (the leader on either side)   | `Lab.heal`        |
| freeze             | cgroup freezer on the leader's host (mostly) or a  | thaw              |
|                    | follower's: a paused leader that wakes up must not |                   |
|                    | get a write accepted                               |                   |
| disk-full          | the small disk of the disk host fills (after, half | free the space    |
|                    | the time, moving leadership onto it)               |                   |

Every start and stop is recorded in the history (process "nemesis"), with its target, so the
timeline plot and an anomaly report show what was happening when.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .cluster import LabCluster
from .history import History

KINDS = ("crash", "partition-leader", "partition-minority", "partition-halves", "freeze", "disk-full")


@dataclass
class Fault:
    kind: str
    target: list[str]
    detail: dict[str, Any] = field(default_factory=dict)


class Nemesis:
    def __init__(self, cluster: LabCluster, history: History, rng: random.Random, managers: list[str],
                 disk_hosts: list[str] | None = None):
        self.cluster, self.lab, self.history, self.rng = cluster, cluster.lab, history, rng
        self.managers = managers
        self.disk_hosts = disk_hosts or []
        self.active: list[Fault] = []
        self.counts: dict[str, int] = {}

    def possible(self, kinds: tuple[str, ...] | list[str]) -> list[str]:
        return [k for k in kinds if k != "disk-full" or self.disk_hosts]

    def _leader_or_any(self, p_leader: float) -> str:
        leader = self.cluster.leader(self.managers)
        if leader and self.rng.random() < p_leader:
            return leader
        return self.rng.choice(self.managers)

    def start(self, kind: str) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(KINDS)}")
        detail: dict[str, Any] = {}
        if kind == "crash":
            target = [self._leader_or_any(0.5)]
            self.history.nemesis("start", kind, target=target)
            self.lab.crash(target[0])
        elif kind == "freeze":
            target = [self._leader_or_any(0.7)]
            self.history.nemesis("start", kind, target=target)
            self.lab.freeze(target[0])
        elif kind.startswith("partition-"):
            leader = self.cluster.leader(self.managers)
            followers = [m for m in self.managers if m != leader]
            if kind == "partition-leader" and leader:
                target = [leader]
            elif kind == "partition-minority":
                target = self.rng.sample(followers, min(len(followers), self.rng.choice((1, (len(self.managers) - 1) // 2))))
            else:
                target = self.rng.sample(self.managers, len(self.managers) // 2)
            detail["leader"] = leader
            self.history.nemesis("start", kind, target=sorted(target), **detail)
            self.lab.partition(*target)
        else:  # disk-full
            host = self.rng.choice(self.disk_hosts)
            leader = self.cluster.leader(self.managers)
            if leader and leader != host and self.rng.random() < 0.5:
                try:
                    detail["moved_leader"] = self.cluster.transfer_leader(host, via=leader)
                except Exception as e:  # noqa: BLE001 - the fault goes on without it
                    detail["moved_leader_failed"] = str(e)[:200]
            target = [host]
            self.history.nemesis("start", kind, target=target, **detail)
            detail["filled_bytes"] = self.lab.fill_disk(host)
        fault = Fault(kind, sorted(target), detail)
        self.active.append(fault)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return fault

    def stop(self, fault: Fault) -> None:
        if fault.kind == "crash":
            self.lab.restart(fault.target[0], wait_docker=True)
        elif fault.kind == "freeze":
            self.lab.thaw(fault.target[0])
        elif fault.kind.startswith("partition-"):
            self.lab.heal()
        else:
            self.lab.free_disk(fault.target[0])
        self.history.nemesis("stop", fault.kind, target=fault.target)
        self.active.remove(fault)

    def stop_all(self) -> None:
        """Undo every active fault, then make sure nothing of the lab is left broken."""
        for f in list(self.active):
            self.stop(f)
        self.lab.heal()
        for h in self.lab.hosts():
            if h.state == "frozen":
                self.lab.thaw(h.name)
            elif h.state == "crashed":
                self.lab.restart(h.name, wait_docker=True)
        for h in self.disk_hosts:
            self.lab.free_disk(h)
