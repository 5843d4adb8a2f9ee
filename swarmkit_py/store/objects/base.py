"""The common ground of every stored object and spec: Docker's JSON spelling on the wire,
Python's snake_case in code.

Why these choices:
- Field names are snake_case and aliased to Docker's exact keys (`ID`, `NodeID`, `NanoCPUs`,
  `DNSConfig`...), so `to_api()` (or `model_dump(mode="json")`) yields what the CLI and SDK
  unmarshal, and manager code still reads `task.node_id`.
- Go's `encoding/json` matches keys case-insensitively and the SDK relies on it
  (`{"mode": {"replicated": ...}}`), so incoming keys are folded onto the known aliases.
  Label maps are plain dicts and are never folded: label keys are case-sensitive.
- Unknown keys are kept by the models (`extra="allow"`), so an object replicated by a newer
  member survives a round trip through an older one. Specs from clients are another matter:
  the service and swarm specs model every field of Docker API 1.41, and the control API
  drops (with a warning) whatever key is still unknown after parsing, so nothing is stored
  that nothing honours (manager/controlapi/taskfields.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from ..timefmt import format_rfc3339, parse_rfc3339, to_utc

# snake_case words that Docker spells in capitals.
_UPPER_WORDS = {
    "id": "ID",
    "ids": "IDs",
    "pid": "PID",
    "cpus": "CPUs",
    "dns": "DNS",
    "tls": "TLS",
    "ca": "CA",
    "os": "OS",
    "csr": "CSR",
    "cn": "CN",
    "ip": "IP",
    "ips": "IPs",
}


def docker_alias(name: str) -> str:
    """`node_id` -> `NodeID`, `nano_cpus` -> `NanoCPUs`, `global_` -> `Global`."""
    parts = name.strip("_").split("_")
    return "".join(_UPPER_WORDS.get(p, p[:1].upper() + p[1:]) for p in parts)


def _parse_timestamp(value: Any) -> Any:
    if isinstance(value, str):
        return parse_rfc3339(value)
    if isinstance(value, datetime):
        return to_utc(value)
    return value


Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_timestamp),
    PlainSerializer(format_rfc3339, return_type=str, when_used="json"),
]
"""An aware UTC datetime that reads any RFC 3339 and writes `...Z` in JSON mode."""


DEFINED: list[type[BaseModel]] = []
"""Every model class, in the order they were defined (a class after those it contains)."""


def build_all() -> None:
    """Build every model's validator now, in the order they were defined, as they were built
    before `defer_build`: built on first use instead, a container built inside its parent's
    validator and again on its own cost a manager 1 MB more (bench/agent_rss.py)."""
    for cls in DEFINED:
        cls.model_rebuild()


class DockerModel(BaseModel):
    """Base of every object and spec model."""

    model_config = ConfigDict(
        extra="allow",
        alias_generator=docker_alias,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        # Validators are built on first use (a worker validates task specs and statuses only:
        # 1 MB of its RSS); a manager builds them all when it starts (`build_all`).
        defer_build=True,
    )

    _key_map: ClassVar[dict[str, str]] = {}
    _exact_keys: ClassVar[frozenset[str]] = frozenset()
    """The keys `_fold_keys` maps onto themselves: a payload with only these (every Raft entry
    and snapshot, written by `to_wire`) is returned as it is, without a loop in Python."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        DEFINED.append(cls)
        key_map: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            alias = info.alias or name
            key_map[alias.lower()] = alias
            key_map[name.lower()] = alias
        cls._key_map = key_map
        cls._exact_keys = frozenset(a for a in key_map.values() if key_map[a.lower()] == a)

    @model_validator(mode="before")
    @classmethod
    def _fold_keys(cls, data: Any) -> Any:
        """Map keys onto Docker's spelling regardless of case (and from the Python field name);
        the exact spelling wins over a folded one when a payload carries both (`Mode`, `mode`)."""
        if not isinstance(data, dict) or cls._exact_keys.issuperset(data):
            return data  # already in Docker's spelling: folding would map every key to itself
        key_map = cls._key_map
        out: dict[Any, Any] = {}
        exact: set[Any] = set()
        for key, value in data.items():
            if not isinstance(key, str):
                out[key] = value
                continue
            canon = key_map.get(key.lower(), key)
            if canon == key:
                exact.add(canon)
                out[canon] = value
            elif canon not in exact:
                out[canon] = value
        return out

    def to_api(self) -> dict[str, Any]:
        """The Docker Engine API JSON of this object: aliased keys, RFC 3339 times, no nulls
        (Go's `omitempty`), and no internal fields."""
        return self.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude=self._internal_fields()
        )

    def to_wire(self) -> dict[str, Any]:
        """Everything, internal fields included: what the Raft log and snapshots carry."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def clone(self):
        """A deep copy to modify before proposing an update; stored objects are shared."""
        return self.model_copy(deep=True)

    @classmethod
    def _internal_fields(cls) -> set[str] | None:
        return None


class Version(DockerModel):
    """Raft index of the last change: the token for optimistic concurrency."""

    index: int = 0


class StoreObject(DockerModel):
    """Meta shared by Cluster, Node, Service and Task.

    `version.index` and `created_at`/`updated_at` are owned by the store: apply overwrites
    them from the Raft entry, whatever the proposer put there (except that an update's
    `version.index` is first checked against the stored one)."""

    kind: ClassVar[str] = ""
    internal: ClassVar[frozenset[str]] = frozenset()
    """Fields replicated through Raft but never shown on the Docker API."""

    id: str = ""
    version: Version = Field(default_factory=Version)
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None

    @classmethod
    def _internal_fields(cls) -> set[str] | None:
        return set(cls.internal) or None

    def name_key(self) -> str | None:
        """The name this object is found by (`docker service ps web`), if any."""
        return None
