"""What a node remembers about its membership, under the agent's state dir.

    <state>/node.json           who we are: node id, cluster id, role, raft id, managers
    <state>/certs/              swarm-node.crt/.key (0600), swarm-root-ca.crt
    <state>/raft/               WAL and snapshots (managers)
    <state>/joining-as          while `join --expect-role R` runs: R (a hint, see role_hint)

node.json is replaced atomically (temp + fsync + rename) so a crash never leaves half of it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..ca import write_atomic

ROOT_CA_CERT = "swarm-root-ca.crt"
ROOT_CA_KEY = "swarm-root-ca.key"


@dataclass
class LocalNode:
    """This host's own record of its swarm membership (node.json). Not the store's
    `NodeState` (ready/down, the cluster's view of a node's health)."""

    node_id: str
    cluster_id: str
    role: str  # "manager" | "worker": what this node currently acts as
    raft_id: int = 0
    managers: list[str] = field(default_factory=list)  # host:port of managers we know
    bootstrap: bool = False  # founding manager that has not yet written the first state

    @staticmethod
    def path(state_dir: Path) -> Path:
        return Path(state_dir) / "node.json"

    @classmethod
    def load(cls, state_dir: Path) -> LocalNode | None:
        p = cls.path(state_dir)
        if not p.exists():
            return None
        return cls(**json.loads(p.read_text()))

    def save(self, state_dir: Path) -> None:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        write_atomic(self.path(state_dir), json.dumps(asdict(self), indent=2).encode(), mode=0o600)


def certs_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "certs"


JOINING_AS = "joining-as"


def role_hint(state_dir: Path) -> str | None:
    """The role a `join` under way expects (`swarmkit-py join --expect-role`), None when no
    join says: a hint only, so the agent waiting on this state dir can start loading what
    that role needs while the join runs; node.json, written when the join ends, decides."""
    try:
        hint = (Path(state_dir) / JOINING_AS).read_text().strip()
    except OSError:
        return None
    return hint if hint in ("manager", "worker") else None
