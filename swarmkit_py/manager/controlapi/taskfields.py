"""What a service's TaskTemplate may ask for, field by field: the one rule for unknown keys
and the refusals for known fields a Linux worker cannot honour.

The rule, for every spec a client writes (service create and update; the swarm spec too):
- a key Docker API 1.41 does not define (a typo, a field of a newer API) is dropped and
  named in the response's `Warnings`, which the docker CLI prints. dockerd drops such keys
  silently (Go's JSON decoder ignores them); dropping them here too keeps a spec from being
  stored, and shown back by `inspect`, as if it were honoured, and the warning says so.
- a key Docker does define but that cannot work here is refused with a 400 naming the field
  and why (Windows-only isolation and credential specs, plugins, named pipes, generic
  resources). Everything else reaches the container (worker/executor/docker_adapter.py).
- input the engine would refuse when the task's container is created (a relative mount
  target, an unknown capability, a sysctl outside the container's namespaces, a soft ulimit
  above its hard one) is refused here, at create/update: otherwise the service is accepted
  and its tasks are rejected on every node, one after the other.

The models (store/objects/taskspec.py) declare every 1.41 field, so "not declared" is
"unknown to Docker 1.41".
"""

from __future__ import annotations

import ipaddress
import re

from ...store import ServiceSpec, TaskSpec
from ...store.objects import DockerModel
from ...store.objects.taskspec import NETWORK_ATTACHMENT_KEYS, ContainerSpec, Mount
from .errors import InvalidArgument

API_VERSION = "1.41"

MOUNT_TYPES = ("bind", "volume", "tmpfs")
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
ULIMITS = frozenset({"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                     "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"})
"""The names the engine's ulimit parser (go-units) knows."""
CAPABILITIES = frozenset({
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER",
    "KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
    "NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP",
    "SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE",
    "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG",
    "WAKE_ALARM", "ALL"})
"""Linux capabilities by the engine's names (with or without `CAP_`), plus `ALL`."""
_IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                          "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                          "kernel.shm_rmid_forced"})
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(message)


# -- unknown keys ---------------------------------------------------------------------------


def drop_unknown(model: DockerModel, path: str = "") -> list[str]:
    """Remove, everywhere in `model`, the keys no model declares; returns their paths
    (`TaskTemplate.ContainerSpec.Foo`). Label and option maps are data, never looked into."""
    found: list[str] = []
    extra = model.__pydantic_extra__
    if extra:
        found += [f"{path}{key}" for key in extra]
        extra.clear()
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        where = f"{path}{info.alias or name}"
        if isinstance(value, DockerModel):
            found += drop_unknown(value, where + ".")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, DockerModel):
                    found += drop_unknown(item, f"{where}[{i}].")
    if isinstance(model, (TaskSpec, ServiceSpec)) and model.networks:
        model.networks = [_network_entry(e, f"{path}Networks[{i}].", found)
                          for i, e in enumerate(model.networks)]
    return found


def _network_entry(entry, where: str, found: list[str]):
    """A NetworkAttachmentConfig: keys folded onto Docker's spelling, unknown ones dropped."""
    if not isinstance(entry, dict):
        return entry
    canon = {k.lower(): k for k in NETWORK_ATTACHMENT_KEYS}
    out = {}
    for key, value in entry.items():
        known = canon.get(str(key).lower())
        if known is None:
            found.append(f"{where}{key}")
        elif known not in out or key == known:
            out[known] = value
    return out


def unknown_warning(path: str) -> str:
    return (f"unknown field {path} ignored: it is not part of a Docker API {API_VERSION} "
            "service spec, so swarmkit-py did not store it")


# -- refusals and checks --------------------------------------------------------------------


def validate_task_fields(ts: TaskSpec) -> None:
    """The TaskTemplate fields besides ContainerSpec's basics (servicespec.py checks image,
    health check, resources' minimums, restart policy and placement)."""
    if ts.plugin_spec is not None:
        raise _invalid("TaskTemplate.PluginSpec: plugin services are not supported: "
                       "swarmkit-py runs containers (use ContainerSpec)")
    if ts.network_attachment_spec is not None:
        raise _invalid("TaskTemplate.NetworkAttachmentSpec: network attachment tasks are "
                       "made by dockerd for `docker run --network`; not supported here")
    if ts.runtime not in (None, "", "container"):
        raise _invalid(f"TaskTemplate.Runtime {ts.runtime!r} is not supported: only "
                       "\"container\" (plugins and attachments are not)")
    reservations = ts.resources.reservations if ts.resources is not None else None
    if reservations is not None and reservations.generic_resources:
        raise _invalid("TaskTemplate.Resources.Reservations.GenericResources: generic "
                       "resources are not supported (no node advertises any, so the task "
                       "could never be scheduled)")
    for entry in ts.networks or []:
        if isinstance(entry, dict) and entry.get("DriverOpts"):
            raise _invalid("TaskTemplate.Networks.DriverOpts: per-attachment driver options "
                           "are not supported (the overlay driver takes none)")
    if ts.log_driver is not None and not ts.log_driver.name:
        raise _invalid("TaskTemplate.LogDriver: Name is required (e.g. json-file)")
    if ts.container_spec is not None:
        _validate_container(ts.container_spec)


def _validate_container(cs: ContainerSpec) -> None:
    pre = "ContainerSpec"
    if cs.privileges is not None and cs.privileges.credential_spec is not None:
        raise _invalid(f"{pre}.Privileges.CredentialSpec: credential specs are a Windows "
                       "feature; Linux workers cannot use them")
    if cs.isolation not in (None, "", "default"):
        raise _invalid(f"{pre}.Isolation {cs.isolation!r}: process and hyperv isolation are "
                       "Windows features; Linux containers support only \"default\"")
    targets: set[str] = set()
    for i, m in enumerate(cs.mounts or []):
        _validate_mount(m, f"{pre}.Mounts[{i}]")
        if m.target in targets:
            raise _invalid(f"{pre}.Mounts: duplicate mount point: {m.target}")
        targets.add(m.target)
    for i, u in enumerate(cs.ulimits or []):
        if u.name not in ULIMITS:
            raise _invalid(f"{pre}.Ulimits[{i}]: invalid ulimit type {u.name!r} (one of "
                           f"{', '.join(sorted(ULIMITS))})")
        if u.soft > u.hard:
            raise _invalid(f"{pre}.Ulimits[{i}] {u.name}: soft limit {u.soft} is above the "
                           f"hard limit {u.hard}")
    for key in cs.sysctls or {}:
        if not _namespaced_sysctl(key):
            raise _invalid(f"{pre}.Sysctls: sysctl {key!r} is not allowed: only namespaced "
                           "sysctls (net.*, kernel.msg*/sem/shm*, fs.mqueue.*, "
                           "kernel.domainname) can be set per container; the rest would "
                           "change the node itself")
    for field, caps in (("CapabilityAdd", cs.capability_add), ("CapabilityDrop",
                                                                 cs.capability_drop)):
        for cap in caps or []:
            name = cap.upper().removeprefix("CAP_")
            if name not in CAPABILITIES:
                raise _invalid(f"{pre}.{field}: unknown capability {cap!r}")
    if cs.dns_config is not None:
        for ns in cs.dns_config.nameservers or []:
            try:
                ipaddress.ip_address(ns)
            except ValueError:
                raise _invalid(f"{pre}.DNSConfig.Nameservers: {ns!r} is not an IP "
                               "address") from None
    for entry in cs.hosts or []:
        parts = entry.split()
        try:
            ipaddress.ip_address(parts[0] if parts else "")
        except ValueError:
            raise _invalid(f"{pre}.Hosts: {entry!r} is not \"IP_address hostname "
                           "[aliases...]\" (the CLI's --host-add takes host:ip)") from None
        if len(parts) < 2 or not all(_HOSTNAME.match(p) for p in parts[1:]):
            raise _invalid(f"{pre}.Hosts: {entry!r} needs a valid hostname after the "
                           "address")


def _validate_mount(m: Mount, pre: str) -> None:
    kind = m.type
    if not kind:
        raise _invalid(f"{pre}: Type is required (bind, volume or tmpfs)")
    if kind == "npipe":
        raise _invalid(f"{pre}: named pipe mounts are a Windows feature")
    if kind not in MOUNT_TYPES:
        raise _invalid(f"{pre}: invalid mount type {kind!r} (bind, volume or tmpfs)")
    if not m.target or not m.target.startswith("/"):
        raise _invalid(f"{pre}: invalid mount target {m.target or ''!r}: it must be an "
                       "absolute path")
    for field, allowed in (("bind_options", "bind"), ("volume_options", "volume"),
                           ("tmpfs_options", "tmpfs")):
        if getattr(m, field) is not None and kind != allowed:
            name = type(m).model_fields[field].alias
            raise _invalid(f"{pre}: {name} must not be specified for a {kind} mount")
    if kind == "bind":
        if not m.source or not m.source.startswith("/"):
            raise _invalid(f"{pre}: a bind mount needs an absolute Source path on the node")
        prop = m.bind_options.propagation if m.bind_options is not None else None
        if prop not in (None, "") and prop not in PROPAGATIONS:
            raise _invalid(f"{pre}: invalid bind propagation {prop!r} (one of "
                           f"{', '.join(PROPAGATIONS)})")
    elif kind == "tmpfs":
        if m.source:
            raise _invalid(f"{pre}: a tmpfs mount takes no Source")
        opts = m.tmpfs_options
        if opts is not None and (opts.size_bytes or 0) < 0:
            raise _invalid(f"{pre}: TmpfsOptions.SizeBytes cannot be negative")
        if opts is not None and opts.mode is not None and not 0 <= opts.mode <= 0o7777:
            raise _invalid(f"{pre}: invalid TmpfsOptions.Mode {opts.mode:o}")
    elif m.source and "/" in m.source:
        raise _invalid(f"{pre}: a volume mount's Source is a volume name, not a path "
                       f"({m.source!r}: use Type bind for a host path)")


def _namespaced_sysctl(key: str) -> bool:
    """The engine's rule (runc's sysctl validation): IPC, message queue, network and UTS
    (domain name) sysctls live in the container's own namespaces."""
    return (key in _IPC_SYSCTLS or key == "kernel.domainname" or key.startswith("fs.mqueue.")
            or key.startswith("net.") or key.startswith("kernel.msg")
            or key.startswith("kernel.shm"))


def spec_warnings(spec: ServiceSpec) -> list[str]:
    """Drop every unknown key of a parsed ServiceSpec; the warnings to answer with."""
    return [unknown_warning(p) for p in drop_unknown(spec)]
