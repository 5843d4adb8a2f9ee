"""The dispatcher's contract: worker sessions, heartbeats, task assignments and status reports.

Served by ``manager/dispatcher`` on the Raft leader, used by ``worker/session.py`` and
``worker/reconcile``. Everything is plain msgpack data.

Requests (worker -> leader):

- ``dispatcher.session`` ``{"node_id"?: str, "addr"?: str, "description"?: {...},
  "features"?: [str, ...]}`` ->
  ``{"session_id": str, "node_id": str, "heartbeat_period": float,
  "managers": [{"node_id": str, "addr": "host:port"}]}``.
  ``node_id`` is only read when the dispatcher trusts params for identity (tests without TLS);
  otherwise it must match the certificate or be absent. ``description`` is
  ``{"hostname", "platform": {"architecture", "os"}, "resources": {"nano_cpus",
  "memory_bytes"}, "engine": {"engine_version", "labels"}}`` (Docker spellings also accepted).
  ``features`` names what the worker understands beyond the base contract; the one defined
  is ``FEATURE_INCREMENTAL`` (assignment changes, below). A manager ignores names it does
  not know, and a worker that names none gets full sets only (an older worker, mid-upgrade).
- ``dispatcher.heartbeat`` ``{"session_id": str}`` ->
  ``{"heartbeat_period": float, "managers": [...]}``.
- ``dispatcher.task_status`` ``{"session_id": str, "updates": [update, ...]}`` ->
  ``{"written": int, "skipped": [{"task_id": str, "reason": str}]}``. An update is
  ``{"task_id": str, "state": str, "message"?: str, "err"?: str, "container_status"?:
  {"container_id", "pid", "exit_code"}, "timestamp"?: float (unix seconds) | RFC 3339 str}``
  (``status_update`` writes one, ``parse_status_update`` reads one).

- ``dispatcher.assignments_resync`` ``{"session_id": str}`` -> ``{}``: send this session
  its full set again (a worker that received a change it cannot apply asks for it).

- ``dispatcher.watch`` ``{}`` -> ``{"leader_addr": str | None, "term": int, "spread_s": float}``: served by every
  manager, leader or not; subscribes the calling connection to ``dispatcher.leader`` pushes.
  Workers call it on a standby connection (a manager other than their session's) once per
  heartbeat period, which doubles as a liveness check of the standby.

Pushes (manager -> worker, on a watching connection): ``dispatcher.leader``
``{"leader_addr": str, "term": int, "spread_s": float}`` as soon as that manager's Raft member
sees a new leader; the worker moves its session at a random moment within ``spread_s`` (the
cluster's nodes over the rate the leader serves, so a thousand sessions do not all land on the
new leader in the same instant; 0 or absent: at once).

Pushes (leader -> worker, notifications on the connection that opened the session):

- ``dispatcher.assignments`` ``{"seq": int, "tasks": [task, ...]}``: the node's full set, one
  ``AssignedTask`` per entry (``to_wire`` / ``from_wire``).
  A task referencing secrets or configs carries their bytes in ``files`` (``TaskFile``).
  To a session that named ``FEATURE_INCREMENTAL``, after the first full set:
  ``{"seq": int, "base": int, "changed": [task, ...], "removed": [task_id, ...]}``, the
  tasks added or changed and the ids that left the set since the push whose ``seq`` is
  ``base`` (swarmkit's incremental assignments: a change costs what changed, not the node's
  whole set, which can be thousands of tasks). A worker whose last applied push is not
  ``base`` applies nothing and asks ``dispatcher.assignments_resync``.
- ``dispatcher.managers`` ``{"managers": [{"node_id", "addr"}]}``: the manager list changed.

Error codes: ``codes.NOT_LEADER`` (with ``not_leader_message``), ``SESSION_INVALID``,
``NODE_NOT_FOUND``, ``PERMISSION_DENIED``, ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..store.objects import ContainerStatus, PortConfig, TaskSpec, TaskState, TaskStatus
from ..store.timefmt import parse_rfc3339

SESSION = "dispatcher.session"
HEARTBEAT = "dispatcher.heartbeat"
TASK_STATUS = "dispatcher.task_status"
ASSIGNMENTS_RESYNC = "dispatcher.assignments_resync"
FEATURE_INCREMENTAL = "assignments-incremental"
"""A session feature: the worker applies assignment changes (see the module docstring)."""
ASSIGNMENTS = "dispatcher.assignments"
MANAGERS_PUSH = "dispatcher.managers"
NETMAP = "dispatcher.netmap"
"""Leader -> every worker: the cluster's network map (manager/dispatcher/netmap.py)."""
WATCH = "dispatcher.watch"
"""Worker -> any manager: subscribe to LEADER_PUSH (see the module docstring)."""
LEADER_PUSH = "dispatcher.leader"
PROBE = "dispatcher.probe"
"""Leader -> a worker whose heartbeat is late: no answer expected, the worker ignores it. It
gives the worker's kernel a segment to acknowledge (manager/dispatcher, "kernel evidence")."""

_HINT = re.compile(r"\bleader_addr=(\S*)$")


def not_leader_message(leader_addr: str | None) -> str:
    """A message readable by people whose ``leader_addr=...`` tail a program can parse.

    The RPC layer carries only ``(code, message)``; ending the message with a fixed
    ``leader_addr=<host:port>`` field keeps the error typed by its code while still telling
    the worker where to go.
    """
    if leader_addr:
        return f"this manager is not the leader; the leader is {leader_addr}; leader_addr={leader_addr}"
    return "this manager is not the leader and knows no leader (election under way?); leader_addr="


def leader_hint(message: str) -> str | None:
    """The leader address carried by a NOT_LEADER message, or None if none is known."""
    m = _HINT.search(message)
    return (m.group(1) or None) if m else None


# -- task assignments -------------------------------------------------------------------------


def state_or_new(raw: Any) -> TaskState:
    """A wire state name (``"running"``, any case); NEW for one this release does not know."""
    try:
        return TaskState(raw)
    except ValueError:
        return TaskState.NEW


@dataclass(frozen=True)
class NetAttachment:
    """One of a task's overlay networks: its address with what the worker needs to set the
    network up locally before the container is created (subnet, gateway, VXLAN id)."""

    network_id: str
    name: str
    subnet: str
    gateway: str
    vni: int
    address: str  # CIDR
    internal: bool = False
    ingress: bool = False
    aliases: tuple[str, ...] = ()
    ip_range: str | None = None
    """Attachable networks: this node's block for standalone containers."""

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.network_id, "name": self.name, "subnet": self.subnet,
                "gateway": self.gateway, "vni": self.vni, "internal": self.internal,
                "ingress": self.ingress, "address": self.address, "aliases": list(self.aliases),
                "ip_range": self.ip_range}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> NetAttachment:
        """Raises KeyError/TypeError/ValueError for a malformed entry."""
        return cls(network_id=str(d["id"]), name=str(d["name"]), subnet=str(d["subnet"]),
                   gateway=str(d["gateway"]), vni=int(d["vni"]), address=str(d["address"]),
                   internal=bool(d.get("internal")), ingress=bool(d.get("ingress")),
                   aliases=tuple(d.get("aliases") or ()), ip_range=d.get("ip_range") or None)


@dataclass(frozen=True)
class TaskFile:
    """A secret's or config's bytes for one task, with where they go in its container.

    Only the tasks that reference an object carry its data, so a node learns a secret only
    while it has an assigned task using it (swarmkit's rule). ``path`` is absolute (relative
    targets already resolved); ``data`` is raw bytes (msgpack bin) and a worker keeps it in
    memory only."""

    kind: str  # "secret" | "config"
    id: str
    name: str
    path: str
    uid: int
    gid: int
    mode: int
    data: bytes = field(repr=False)

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name, "path": self.path,
                "uid": self.uid, "gid": self.gid, "mode": self.mode, "data": self.data}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TaskFile:
        """Raises KeyError/TypeError/ValueError for a malformed entry."""
        data = d["data"]
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes")
        path = str(d["path"])
        if not path.startswith("/"):
            raise ValueError(f"path {path!r} is not absolute")
        return cls(kind=str(d["kind"]), id=str(d["id"]), name=str(d["name"]), path=path,
                   uid=int(d["uid"]), gid=int(d["gid"]), mode=int(d["mode"]), data=data)


@dataclass(frozen=True)
class AssignedTask:
    """One task of a ``dispatcher.assignments`` push: what a worker needs to run it.

    ``spec`` is the store's TaskSpec as the Docker API spells it (durations in nanoseconds,
    the unit kept all the way to the engine): the canonical form, so fields the executor learns
    later need no dispatcher change. ``ports`` are the host-mode published ports of the
    endpoint the task was created with, the only endpoint part a worker acts on; ``networks``
    its overlay addresses (the first is the container's at creation, the others are connected
    before it starts; none: the engine's default network, as in Swarm). ``state`` is the
    observed state in the store; a worker uses it only for tasks it does not know locally
    (after its own restart).
    """

    id: str
    node_id: str
    service_id: str
    service_name: str
    slot: int | None  # None: a global service's task, named after its node instead
    desired_state: TaskState
    state: TaskState
    spec: TaskSpec
    ports: tuple[PortConfig, ...] = ()
    networks: tuple[NetAttachment, ...] = ()
    name: str | None = None
    files: tuple[TaskFile, ...] = ()
    """The task's secrets and configs with their data (none when it references none)."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "service_id": self.service_id,
            "service_name": self.service_name,
            "slot": self.slot,
            "node_id": self.node_id,
            "desired_state": str(self.desired_state),
            "state": str(self.state),
            "spec": self.spec.to_wire(),
            "ports": [p.to_wire() for p in self.ports],
            "networks": [n.to_wire() for n in self.networks],
            "files": [f.to_wire() for f in self.files],
        }

    @classmethod
    def from_wire(cls, raw: Any) -> AssignedTask:
        """Raises ValueError saying what is wrong. Unknown states read as NEW, so a newer
        manager's state names do not make a task unreadable."""
        if not isinstance(raw, Mapping) or not raw.get("id") or not raw.get("node_id"):
            raise ValueError("an assigned task needs an id and a node_id")
        try:
            spec = TaskSpec.model_validate(raw.get("spec") or {})
        except ValidationError as e:
            raise ValueError(f"invalid task spec: {e}") from None
        try:
            ports = tuple(PortConfig.model_validate(p) for p in raw.get("ports") or ())
        except ValidationError as e:
            raise ValueError(f"invalid published port: {e}") from None
        try:
            networks = tuple(NetAttachment.from_wire(n) for n in raw.get("networks") or ())
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"invalid network attachment: {e!r}") from None
        try:
            files = tuple(TaskFile.from_wire(f) for f in raw.get("files") or ())
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"invalid secret/config file: {e!r}") from None
        slot = raw.get("slot")
        return cls(
            id=str(raw["id"]),
            node_id=str(raw["node_id"]),
            service_id=str(raw.get("service_id") or ""),
            service_name=str(raw.get("service_name") or raw.get("service_id") or "task"),
            slot=None if slot is None else int(slot),
            desired_state=state_or_new(raw.get("desired_state")),
            state=state_or_new(raw.get("state")),
            spec=spec,
            ports=ports,
            networks=networks,
            name=raw.get("name"),
            files=files,
        )


# -- task status reports ----------------------------------------------------------------------


def status_update(task_id: str, status: TaskStatus, timestamp: float) -> dict[str, Any]:
    """One update of a ``dispatcher.task_status`` call (``timestamp`` in unix seconds)."""
    update: dict[str, Any] = {
        "task_id": task_id,
        "state": str(status.state),
        "message": status.message,
        "timestamp": timestamp,
    }
    if status.err:
        update["err"] = status.err
    cs = status.container_status
    if cs is not None:
        update["container_status"] = {
            "container_id": cs.container_id,
            "pid": cs.pid,
            "exit_code": cs.exit_code,
        }
    return update


def parse_status_update(raw: Any) -> tuple[str, TaskStatus]:
    """``(task_id, status)`` of one update; raises ValueError with a message for the caller.
    Which states a worker may report is the dispatcher's rule, not checked here."""
    if not isinstance(raw, Mapping):
        raise ValueError("each update must be a map")
    task_id = raw.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise ValueError("update without task_id")
    try:
        state = TaskState(raw.get("state"))
    except ValueError:
        raise ValueError(f"task {task_id}: unknown state {raw.get('state')!r}") from None
    message, err = raw.get("message") or "", raw.get("err") or None
    if not isinstance(message, str) or not (err is None or isinstance(err, str)):
        raise ValueError(f"task {task_id}: message and err must be strings")
    try:
        cs = raw.get("container_status")
        status = TaskStatus(
            timestamp=_timestamp(raw.get("timestamp")),
            state=state,
            message=message,
            err=err,
            container_status=None if not cs else ContainerStatus.model_validate(cs),
        )
    except (ValueError, TypeError) as e:
        raise ValueError(f"task {task_id}: {e}") from None
    return task_id, status


def _timestamp(raw: Any) -> datetime:
    if raw is None:
        return datetime.now(UTC)
    if isinstance(raw, bool):
        raise ValueError("timestamp must be a number or an RFC 3339 string")
    if isinstance(raw, int | float):
        return datetime.fromtimestamp(raw, UTC)
    if isinstance(raw, str):
        return parse_rfc3339(raw)
    raise ValueError("timestamp must be a number or an RFC 3339 string")
