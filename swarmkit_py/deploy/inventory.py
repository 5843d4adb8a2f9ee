"""Ansible YAML inventories, validated.

Existing Ansible inventories must work unchanged, so the format is Ansible's (`all:` with
`hosts:`, `vars:` and `children:` groups, nested to any depth) and the connection variables
are Ansible's (`ansible_host`, `ansible_port`, `ansible_user`, `ansible_ssh_private_key_file`,
`ansible_become`). An inventory crosses a trust boundary (an operator typed it), so every
host's merged variables go through a strict pydantic model: a typo such as `ansible_prot`
or `ansible_port: twenty-two` stops the run with a message naming the file, the host and the
field, instead of an SSH timeout ten minutes later.

Variable precedence is Ansible's: `all` vars < parent group vars < child group vars < host
vars. Under all of them lie the roles' defaults (`roles/*/defaults/main.yml`, see
variables.py), so a host's `vars` hold every variable the toolkit uses, templated. The optional
`managers` and `workers` groups pin roles for `bootstrap`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import variables

DEFAULT_INVENTORY = Path("inventories/lab/hosts.yml")

# Ansible connection variables we read or knowingly ignore. Any other `ansible_*` key is
# almost certainly a typo of one of these, and is refused with a suggestion.
KNOWN_ANSIBLE = {
    "ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file",
    "ansible_become", "ansible_become_user", "ansible_become_method", "ansible_ssh_common_args",
    "ansible_become_password", "ansible_become_pass",
    "ansible_python_interpreter", "ansible_connection", "ansible_ssh_extra_args",
    "ansible_ssh_host", "ansible_ssh_port", "ansible_ssh_user",
}
# Our own variables: the roles' defaults plus the connection-level ones below; a misspelt one
# is refused the same way.
CONNECTION_SWARMKIT = {"swarmkit_known_hosts_file", "swarmkit_lab", "swarmkit_advertise_ip"}
# Secrets are templated when a connection needs them (ssh.py), not when the inventory is read,
# so they never sit in a host's vars and an unset variable only matters where it is used.
LAZY = {"ansible_become_password"}


def known_swarmkit() -> set[str]:
    return CONNECTION_SWARMKIT | set(variables.role_defaults())


class InventoryError(ValueError):
    """A problem in an inventory file, phrased for the operator."""


class HostVars(BaseModel):
    """The connection-relevant variables of one host after merging. Unknown non-prefixed
    variables are kept (roles may use them); unknown prefixed ones are refused earlier."""

    model_config = ConfigDict(extra="allow")

    ansible_host: str | None = None
    ansible_port: int = Field(22, ge=1, le=65535)
    ansible_user: str = "root"
    ansible_ssh_private_key_file: str | None = None
    ansible_become: bool = False
    ansible_become_user: str = "root"
    ansible_become_method: Literal["sudo"] = "sudo"  # the only one supported: say so, not ignore it
    ansible_become_password: str | None = None
    ansible_ssh_common_args: str = ""
    swarmkit_known_hosts_file: str | None = None
    swarmkit_advertise_ip: str | None = None


class Host(BaseModel):
    name: str
    address: str
    port: int
    user: str
    key_file: Path | None
    become: bool
    become_user: str = "root"
    known_hosts: Path | None
    groups: tuple[str, ...]
    vars: dict[str, Any]

    @property
    def advertise_ip(self) -> str:
        return self.vars.get("swarmkit_advertise_ip") or self.address


class Inventory(BaseModel):
    path: Path
    hosts: dict[str, Host]  # in file order
    groups: dict[str, list[str]]

    def host(self, name: str) -> Host:
        if name not in self.hosts:
            close = difflib.get_close_matches(name, list(self.hosts), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InventoryError(f"{self.path}: no host {name!r}{hint}; hosts: {', '.join(self.hosts)}")
        return self.hosts[name]

    def group(self, name: str) -> list[str]:
        return list(self.groups.get(name, []))


def default_path() -> Path:
    return Path(os.environ.get("SWARMKIT_INVENTORY") or DEFAULT_INVENTORY)


def load(path: str | Path | None = None) -> Inventory:
    p = Path(path) if path else default_path()
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        hint = " (start the lab with `invoke lab.up`, or pass --inventory)" if "lab" in str(p) else ""
        raise InventoryError(f"{p}: inventory file does not exist{hint}") from None
    except yaml.YAMLError as e:
        raise InventoryError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(doc, dict) or "all" not in doc:
        raise InventoryError(f"{p}: an Ansible YAML inventory starts with a top-level 'all:' group")
    return _build(p, doc)


def _build(p: Path, doc: dict) -> Inventory:
    order: list[str] = []
    layers: dict[str, list[dict]] = {}  # host -> var dicts, lowest precedence first
    groups: dict[str, list[str]] = {}

    def walk(gname: str, body: Any, inherited: list[dict], trail: str) -> list[str]:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise InventoryError(f"{p}: group {trail}: expected a mapping with hosts/vars/children")
        extra = set(body) - {"hosts", "vars", "children"}
        if extra:
            raise InventoryError(f"{p}: group {trail}: unknown key(s) {sorted(extra)}; "
                                 "a group holds only hosts:, vars: and children:")
        gvars = body.get("vars") or {}
        if not isinstance(gvars, dict):
            raise InventoryError(f"{p}: group {trail}: vars: must be a mapping")
        _check_names(p, f"group {trail}", gvars)
        chain = [*inherited, gvars]
        members: list[str] = []
        hosts = body.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise InventoryError(f"{p}: group {trail}: hosts: must be a mapping of host names")
        for h, hv in hosts.items():
            h = str(h)
            if hv is not None and not isinstance(hv, dict):
                raise InventoryError(f"{p}: host {h}: its variables must be a mapping (got {hv!r})")
            _check_names(p, f"host {h}", hv or {})
            if h not in layers:
                order.append(h)
                layers[h] = []
            layers[h].append({"__chain": chain, "__host": hv or {}})
            members.append(h)
        for cname, cbody in (body.get("children") or {}).items():
            members += walk(str(cname), cbody, chain, f"{trail}.{cname}")
        groups.setdefault(gname, [])
        groups[gname] += [m for m in members if m not in groups[gname]]
        return members

    walk("all", doc["all"], [], "all")
    hosts = {h: _host(p, h, layers[h], groups) for h in order}
    if not hosts:
        raise InventoryError(f"{p}: the inventory has no hosts")
    both = set(groups.get("managers", [])) & set(groups.get("workers", []))
    if both:
        raise InventoryError(f"{p}: host {sorted(both)[0]}: in both the 'managers' and 'workers' groups")
    return Inventory(path=p, hosts=hosts, groups=groups)


def _check_names(p: Path, where: str, vs: dict) -> None:
    for k in vs:
        k = str(k)
        for prefix, known in (("ansible_", KNOWN_ANSIBLE), ("swarmkit_", known_swarmkit())):
            if k.startswith(prefix) and k not in known:
                close = difflib.get_close_matches(k, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise InventoryError(f"{p}: {where}: field {k!r} is not a known variable{hint}")


def _host(p: Path, name: str, entries: list[dict], groups: dict[str, list[str]]) -> Host:
    merged: dict[str, Any] = dict(variables.role_defaults())
    for e in entries:  # group vars of every group the host appears in, then its own
        for layer in e["__chain"]:
            merged.update(layer)
    for e in entries:
        merged.update(e["__host"])
    for old, new in (("ansible_ssh_host", "ansible_host"), ("ansible_ssh_port", "ansible_port"),
                     ("ansible_ssh_user", "ansible_user"), ("ansible_become_pass", "ansible_become_password")):
        if old in merged:
            merged.setdefault(new, merged.pop(old))
    lazy = {k: merged.pop(k) for k in LAZY if k in merged}
    try:
        merged = {**variables.resolve(merged), **lazy}
    except variables.VariableError as e:
        raise InventoryError(f"{p}: host {name}: {e}") from None
    try:
        hv = HostVars.model_validate(merged)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(map(str, err["loc"]))
        raise InventoryError(f"{p}: host {name}: field {field!r}: {err['msg']} "
                             f"(got {err.get('input')!r})") from None
    base = p.parent
    key = Path(hv.ansible_ssh_private_key_file).expanduser() if hv.ansible_ssh_private_key_file else None
    if key is not None and not key.is_absolute():
        key = base / key
    kh = hv.swarmkit_known_hosts_file or _known_hosts_from_args(hv.ansible_ssh_common_args)
    known = Path(kh).expanduser() if kh else Path("~/.ssh/known_hosts").expanduser()
    if not known.is_absolute():
        known = base / known
    return Host(name=name, address=hv.ansible_host or name, port=hv.ansible_port, user=hv.ansible_user,
                key_file=key, become=hv.ansible_become and hv.ansible_user != hv.ansible_become_user,
                become_user=hv.ansible_become_user,
                known_hosts=known, groups=tuple(g for g, ms in groups.items() if name in ms) or ("all",),
                vars=merged)


def _known_hosts_from_args(args: str) -> str | None:
    """Honour `-o UserKnownHostsFile=...` in ansible_ssh_common_args, as ssh would."""
    parts = args.replace("=", " ").split()
    for i, tok in enumerate(parts[:-1]):
        if tok == "UserKnownHostsFile":
            return parts[i + 1]
    return None
