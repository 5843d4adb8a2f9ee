"""Secrets and configs in the control API: create, list, inspect, update labels, remove, and
the references a service's ContainerSpec makes to them.

swarmkit's rules and wording (controlapi/secret.go, config.go): names are 64 characters of
`[a-zA-Z0-9-_.]` starting and ending alphanumeric; data is 1 byte to 500 KiB (secrets) or
1000 KiB (configs); only labels may change after creation; an object referenced by a service
cannot be removed ("... is in use by the following service: web"). A service references
them by ID (the CLI resolves names first); the name it carries is checked against the store
so a reference never points at something else than what `inspect` shows.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ...store import (
    AlreadyExists,
    Config,
    ConfigSpec,
    Secret,
    SecretSpec,
    ServiceSpec,
    Transaction,
    Version,
    new_id,
)
from ...store.objects.secret import file_path
from .errors import InvalidArgument, describe_validation
from .filters import labels_match, parse_labels, validate_filters

FILTERS = frozenset({"id", "label", "name", "names"})
_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$")
_CREATE_KEYS = {
    "secret": frozenset({"name", "labels", "data", "driver", "templating"}),
    "config": frozenset({"name", "labels", "data", "templating"}),
}


@dataclass(frozen=True)
class Kind:
    name: str  # "secret" | "config"
    max_size: int

    @property
    def ref_field(self) -> str:
        return f"{self.name}s"


SECRET = Kind("secret", 500 * 1024)
CONFIG = Kind("config", 1000 * 1024)
KINDS = {"secret": SECRET, "config": CONFIG}


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(message)


def decode_data(kind: Kind, raw: Any) -> bytes:
    if not isinstance(raw, str):
        raise _invalid(f"{kind.name} data must be base64-encoded bytes (the Data field)")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{kind.name} data is not valid base64", plain=True) from None
    if not 0 < len(data) < kind.max_size:
        raise _invalid(f"{kind.name} data must be larger than 0 and less than "
                       f"{kind.max_size} bytes")
    return data


def validate_object_name(name: Any) -> str:
    if not isinstance(name, str) or len(name) > 64 or not _NAME.match(name):
        raise _invalid("invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the "
                       "start and end character must be [a-zA-Z0-9]")
    return name


def parse_spec(kind: Kind, body: Any) -> SecretSpec | ConfigSpec:
    if not isinstance(body, Mapping):
        raise InvalidArgument(f"invalid {kind.name} spec: expected a JSON object", plain=True)
    raw = {str(k).lower(): v for k, v in body.items()}
    unknown = sorted(set(raw) - _CREATE_KEYS[kind.name])
    if unknown:
        raise InvalidArgument(f"{kind.name} spec field {unknown[0]!r} is not supported "
                              f"(known: {', '.join(sorted(_CREATE_KEYS[kind.name]))})")
    if raw.get("driver"):
        raise _invalid("secret drivers (external secret stores) are not supported: leave out "
                       "--driver; the value is kept in the swarm's own store")
    if raw.get("templating"):
        raise _invalid(f"templated {kind.name}s are not supported: leave out "
                       "--template-driver")
    try:
        if kind is SECRET:
            return SecretSpec(name=raw.get("name") or "", labels=raw.get("labels") or {})
        return ConfigSpec(name=raw.get("name") or "", labels=raw.get("labels") or {},
                          data=raw.get("data") or "")
    except ValidationError as exc:
        raise InvalidArgument(f"invalid {kind.name} spec: {describe_validation(exc)}",
                              plain=True) from None


def users(view, kind: Kind, obj_id: str) -> list[str]:
    """Names of the services whose spec references the object."""
    out = []
    for svc in view.list("service"):
        cs = svc.spec.task_template.container_spec
        refs = getattr(cs, kind.ref_field, None) or [] if cs is not None else []
        if any(getattr(r, f"{kind.name}_id") == obj_id for r in refs):
            out.append(svc.spec.name)
    return out


def object_filter(filters: Mapping[str, Sequence[str]] | None):
    f = validate_filters(filters, FILTERS)
    if not f:
        return None
    labels = parse_labels(f.get("label", []))

    def match(obj) -> bool:
        if f.get("id") and not any(obj.id.startswith(p) for p in f["id"]):
            return False
        if f.get("names") and obj.spec.name not in f["names"]:
            return False
        if f.get("name") and not any(obj.spec.name.startswith(p) for p in f["name"]):
            return False
        return labels_match(obj.spec.labels, labels)

    return match


class SecretConfigMethods:
    """Mixed into ControlAPI, which provides `store`, `ctx`, `_swarm_view`, `_read_view`,
    `_check_version`."""

    async def create_object(self, kind_name: str, body: Any):
        kind = KINDS[kind_name]
        spec = parse_spec(kind, body)
        validate_object_name(spec.name)
        raw_data = body.get("Data", body.get("data")) if isinstance(body, Mapping) else None
        data = decode_data(kind, raw_data)
        view = self._swarm_view()
        if view.find(kind.name, name=spec.name):
            raise AlreadyExists(f"{kind.name} {spec.name} already exists")
        encoded = base64.b64encode(data).decode()
        if kind is SECRET:
            obj = Secret(id=new_id(), spec=spec, data=encoded)
        else:
            spec.data = encoded
            obj = Config(id=new_id(), spec=spec)
        result = await self.ctx.proposer.propose(Transaction().create(obj))
        return next((o for o in result.objects if o.kind == kind.name), obj)

    async def list_objects(self, kind_name: str,
                           filters: Mapping[str, Sequence[str]] | None = None) -> list:
        where = object_filter(filters)
        objs = (await self._read_view()).list(kind_name)
        return [o for o in objs if where(o)] if where else objs

    async def get_object(self, kind_name: str, ref: str):
        return (await self._read_view()).lookup(kind_name, ref)

    async def update_object(self, kind_name: str, ref: str, version: Any, body: Any) -> None:
        kind = KINDS[kind_name]
        version = self._check_version(version)
        obj = self._swarm_view().lookup(kind.name, ref)
        if not isinstance(body, Mapping):
            raise InvalidArgument(f"invalid {kind.name} spec: expected a JSON object", plain=True)
        raw = {str(k).lower(): v for k, v in body.items()}
        labels = raw.pop("labels", None) or {}
        # The CLI sends the whole spec back; anything but the labels must be unchanged.
        current = {k.lower(): v for k, v in obj.spec.to_api().items()}
        data = raw.pop("data", None)
        if data not in (None, ""):
            stored = obj.data if kind is SECRET else obj.spec.data
            # `docker stack deploy` sends the value back on every redeploy: the same bytes
            # are no change (swarmkit compares them too); other bytes are refused.
            if decode_data(kind, data) != base64.b64decode(stored):
                raise _invalid(f"only updates to Labels are allowed ({kind.name} data "
                               "differs: create a new one under another name)")
        for key, value in raw.items():
            if key == "labels" or value in (None, "", {}, []) and not current.get(key):
                continue
            if current.get(key) != value:
                raise _invalid(f"only updates to Labels are allowed ({key} differs)")
        if not isinstance(labels, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise InvalidArgument("Labels must be a map of strings", plain=True)
        updated = obj.clone()
        updated.spec.labels = dict(labels)
        updated.version = Version(index=version)
        await self.ctx.proposer.propose(Transaction().update(updated))

    async def remove_object(self, kind_name: str, ref: str) -> None:
        kind = KINDS[kind_name]
        view = self._swarm_view()
        obj = view.lookup(kind.name, ref)
        in_use = users(view, kind, obj.id)
        if in_use:
            plural = "s" if len(in_use) > 1 else ""
            raise _invalid(f"{kind.name} '{obj.spec.name}' is in use by the following "
                           f"service{plural}: {', '.join(in_use)}")
        await self.ctx.proposer.propose(Transaction().delete(kind.name, obj.id))

    def resolve_file_refs(self, spec: ServiceSpec) -> None:
        """Check every secret/config reference of the spec against the store, fill in the
        name, and refuse what a worker could not honour."""
        cs = spec.task_template.container_spec
        if cs is None:
            return
        view = self.store.view()
        targets: dict[str, str] = {}
        for kind in (SECRET, CONFIG):
            for ref in getattr(cs, kind.ref_field) or []:
                ref_id = getattr(ref, f"{kind.name}_id")
                ref_name = getattr(ref, f"{kind.name}_name")
                if kind is CONFIG and ref.runtime is not None:
                    raise _invalid("config references of type Runtime (credential specs) are "
                                   "a Windows feature and not supported: use File")
                if ref.file is None:
                    raise _invalid(f"{kind.name} reference {ref_name or ref_id}: File is "
                                   "required (the target in the container)")
                obj = view.get(kind.name, ref_id) if ref_id else None
                if obj is None and ref_name:
                    found = view.find(kind.name, name=ref_name)
                    obj = found[0] if found else None
                if obj is None:
                    raise _invalid(f"{kind.name} not found: {ref_id or ref_name}")
                if ref_name and ref_name != obj.spec.name:
                    raise _invalid(f"{kind.name} {ref_id} is named {obj.spec.name}, "
                                   f"not {ref_name}")
                setattr(ref, f"{kind.name}_id", obj.id)
                setattr(ref, f"{kind.name}_name", obj.spec.name)
                f = ref.file
                if not f.name:
                    raise _invalid(f"{kind.name} {obj.spec.name}: File.Name (target) is empty")
                if f.name in ("/", ".") or "\x00" in f.name or ".." in f.name.split("/"):
                    raise _invalid(f"{kind.name} {obj.spec.name}: invalid target {f.name!r}")
                if kind is SECRET and "/" in f.name and not f.name.startswith("/"):
                    raise _invalid(f"secret {obj.spec.name}: a relative target may not "
                                   "contain '/' (it is a file name under /run/secrets)")
                for label, value in (("UID", f.uid), ("GID", f.gid)):
                    if not value.isdigit():
                        raise _invalid(f"{kind.name} {obj.spec.name}: {label} must be a "
                                       f"number, not {value!r}")
                if not 0 <= f.mode <= 0o7777:
                    raise _invalid(f"{kind.name} {obj.spec.name}: invalid Mode {f.mode:o}")
                path = file_path(kind.name, f.name)
                if path in targets:
                    raise _invalid(f"{kind.name} {obj.spec.name} and {targets[path]} have "
                                   f"the same target {path}")
                targets[path] = obj.spec.name


def object_json(obj) -> dict[str, Any]:
    out = obj.to_api()
    out.setdefault("CreatedAt", "0001-01-01T00:00:00Z")
    out.setdefault("UpdatedAt", out["CreatedAt"])
    return out
