"""The agent's configuration (`/etc/swarmkit-py/agent.yml`, rendered by the deploy role).

It crosses a trust boundary (an operator's file), so it is a strict pydantic model: a typo in
a key is an error that names the key, not a silently ignored setting.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

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
            text = p.read_text()
        except FileNotFoundError:
            raise SystemExit(f"agent config {p} does not exist") from None
        raw = read_flat(text)
        if raw is None:
            import yaml

            try:
                raw = yaml.safe_load(text) or {}
            except yaml.YAMLError as e:
                raise SystemExit(f"agent config {p} is not valid YAML: {e}") from None
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise SystemExit(f"agent config {p} is invalid: {errs}") from None


# --- the config as the deploy role writes it, read without yaml --------------------------------
# Every agent start read agent.yml with PyYAML, whose import is ~30-45 ms of CPU (seven agents
# at once on a bootstrap's path, issue 13). The role writes only `key: scalar` lines; those are
# read here, to exactly what yaml.safe_load makes of them (tests/unit/test_agent_config_flat.py
# compares both on generated files), and anything else is left to yaml.

_TEXT = re.compile(r"[\t\n\r -~]*")  # printable ASCII, tabs and line ends: no character YAML reads otherwise
_KEY = re.compile(r"[a-z_][a-z0-9_]*")
_QUOTED = re.compile(r'"([ !#-\[\]-~]*)"')  # printable ASCII, no quote or backslash (no escapes)
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
_PLAIN = re.compile(r"[A-Za-z/][A-Za-z0-9_./-]*")
_YAML_WORDS = frozenset(
    w for base in ("null", "true", "false", "yes", "no", "on", "off", "y", "n")
    for w in (base, base.capitalize(), base.upper()))
"""Plain words YAML 1.1 reads as something other than a string (PyYAML's bool and null), and
y/n for good measure: a file using them, as a key or a value, is left to yaml."""


def read_flat(text: str) -> dict | None:
    """`text` as yaml.safe_load reads it, when it is only blank lines, whole-line comments and
    `key: value` lines (one space after the colon; value a double-quoted string without
    escapes, true/false, a decimal int or float, or a plain word of letters, digits and
    `_./-` starting with a letter or `/`), in printable ASCII; None for anything else."""
    if not _TEXT.fullmatch(text):
        return None
    out: dict = {}
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(": ")
        if not sep or not _KEY.fullmatch(key) or key in _YAML_WORDS:
            return None
        if m := _QUOTED.fullmatch(value):
            out[key] = m.group(1)
        elif value in ("true", "false"):
            out[key] = value == "true"
        elif _INT.fullmatch(value):
            out[key] = int(value)
        elif _FLOAT.fullmatch(value):
            out[key] = float(value)
        elif _PLAIN.fullmatch(value) and value not in _YAML_WORDS:
            out[key] = value
        else:
            return None
    return out
