"""The agent's configuration (`/etc/swarmkit-py/agent.yml`, rendered by the deploy role).

It crosses a trust boundary (an operator's file), so it is a strict pydantic model: a typo in
a key is an error that names the key, not a silently ignored setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..raft.config import RaftConfig


def _check_addr(v: str) -> str:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{v!r} is not host:port")
    return v


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state_dir: Path = Path("/var/lib/swarmkit-py")
    listen_addr: str = Field("0.0.0.0:2377", description="cluster port: Raft, dispatcher, joins (mTLS)")
    advertise_addr: str | None = Field(None, description="address other nodes reach us at (host:port)")
    api_listen: str | None = Field(None, description="Docker API over TLS, e.g. 0.0.0.0:2376 (managers)")
    api_socket: Path | None = Field(Path("/run/swarmkit-py/docker.sock"), description="root-only Docker API socket")
    docker_host: str | None = Field(None, description="the local Docker engine (default: DOCKER_HOST or the unix socket)")
    hostname: str | None = None
    metrics_listen: str | None = Field(None, description="Prometheus /metrics, e.g. 127.0.0.1:9323")
    heartbeat_period_s: float = Field(1.0, gt=0, le=60, description="worker heartbeat period (Swarm: 5 s)")
    max_heartbeats_per_s: float = Field(
        250.0, gt=0, description="heartbeats a second the leader serves at most: beyond "
        "heartbeat_period_s x this many nodes the period grows with the cluster (and so does "
        "down detection, three periods)")
    log_level: str = "INFO"
    loop_stall_warn_s: float = Field(
        default_factory=lambda: float(os.environ.get("SWARMKIT_PY_LOOP_STALL_WARN_S", "0.5")),
        gt=0, description="log where the event loop was held when one turn takes longer "
        "(Raft's election timeout is 0.3-0.6 s by default: a longer hold on the leader costs "
        "an election); every hold of 50 ms or more is counted in /metrics. Benchmarks lower it "
        "with SWARMKIT_PY_LOOP_STALL_WARN_S to see where shorter holds go")
    overlay_dataplane: bool = Field(
        default_factory=lambda: os.environ.get("SWARMKIT_PY_OVERLAY_DATAPLANE", "1") != "0",
        description="program VXLAN, the routing mesh's NAT rules and the embedded DNS in this "
        "host's network namespace (off only for agents sharing one namespace, as in tests)")
    gc_policy: Literal["tuned", "python"] = Field(
        default_factory=lambda: os.environ.get("SWARMKIT_PY_GC_POLICY", "tuned"),
        description="tuned: fewer young collections and full collections that skip what survived "
        "the last one (agent/gcpolicy.py); python: CPython's defaults")
    raft: RaftConfig = Field(default_factory=RaftConfig)

    @field_validator("listen_addr", "advertise_addr", "api_listen", "metrics_listen")
    @classmethod
    def _addr(cls, v):
        return None if v is None else _check_addr(v)

    @classmethod
    def load(cls, path: str | Path) -> AgentConfig:
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise SystemExit(f"agent config {p} does not exist") from None
        except yaml.YAMLError as e:
            raise SystemExit(f"agent config {p} is not valid YAML: {e}") from None
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise SystemExit(f"agent config {p} is invalid: {errs}") from None
