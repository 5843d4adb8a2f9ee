"""Host variables as Ansible computes them: role defaults under inventory vars, templated lazily.

The roles' `defaults/main.yml` files are the one place a default is stated (the install root,
the config path, the ports...). Every host's variables start from them, the inventory's layers
go on top (see inventory.py), and a string holding `{{ ... }}` is rendered against the merged
result, as Ansible does when a variable is used: `swarmkit_agent_config: "{{
swarmkit_config_dir }}/agent.yml"` follows an inventory that moves the config dir. So the
operator-side code reads `host.vars["swarmkit_root"]`, never a second copy of the default.

`lookup('env', NAME)` and `lookup('file', PATH)` work inside templates (Ansible's two lookups
that keep a secret out of the inventory file, e.g. `ansible_become_password`); a missing
environment variable or file is an error naming it, never an empty string.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import yaml

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
ROLE_ORDER = ("common", "agent")  # the order the toolkit applies its roles in


class VariableError(ValueError):
    """A variable could not be computed (undefined name, missing env var or file)."""


def _read_defaults(role_dir: Path) -> dict[str, Any]:
    p = role_dir / "defaults" / "main.yml"
    doc = yaml.safe_load(p.read_text()) if p.exists() else None
    if doc is not None and not isinstance(doc, dict):
        raise VariableError(f"{p}: role defaults must be a mapping of variable names")
    return doc or {}


@functools.cache
def role_defaults(base: Path = ROLES_DIR) -> dict[str, Any]:
    """The merged defaults of the toolkit's roles, in the order they are applied."""
    out: dict[str, Any] = {}
    for name in ROLE_ORDER:
        out.update(_read_defaults(base / name))
    return out


def _lookup(kind: str, arg: str) -> str:
    if kind == "env":
        if arg not in os.environ:
            raise VariableError(f"lookup('env', {arg!r}): the environment variable is not set")
        return os.environ[arg]
    if kind == "file":
        p = Path(arg).expanduser()
        try:
            return p.read_text().rstrip("\n")
        except OSError as e:
            raise VariableError(f"lookup('file', {arg!r}): {e.strerror}") from None
    raise VariableError(f"lookup({kind!r}, ...): only 'env' and 'file' lookups are supported")


@functools.cache
def _env():
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.globals["lookup"] = _lookup
    return env


_PLAIN = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render(value: str, variables: dict[str, Any]) -> str:
    """`value` rendered as a jinja2 template against `variables`. The common case, names only
    (`"{{ swarmkit_config_dir }}/agent.yml"`), is substituted here, as jinja2 would print them
    (str of the value); anything else (filters, expressions, lookups) goes to jinja2, imported
    then: a read-only command whose inventory holds names only never loads it (issue 13)."""
    parts = _PLAIN.split(value)
    if "{{" not in "".join(parts[0::2]) and "{%" not in value and "{#" not in value:
        out = []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                out.append(part)
            elif part in variables:
                out.append(str(variables[part]))
            else:
                raise VariableError(f"{value!r}: '{part}' is undefined")
        return "".join(out)
    import jinja2

    try:
        return _env().from_string(value).render(**variables)
    except jinja2.UndefinedError as e:
        raise VariableError(f"{value!r}: {e.message}") from None
    except jinja2.TemplateSyntaxError as e:
        raise VariableError(f"{value!r}: {e.message}") from None


def resolve(variables: dict[str, Any], depth: int = 8) -> dict[str, Any]:
    """Render every templated string value against the others, until none is left (a
    variable may name one that is itself templated); a cycle is an error."""
    out = dict(variables)
    for _ in range(depth):
        todo = {k: v for k, v in out.items() if isinstance(v, str) and "{{" in v}
        if not todo:
            return out
        for k, v in todo.items():
            out[k] = render(v, out)
    left = sorted(k for k, v in out.items() if isinstance(v, str) and "{{" in v)
    raise VariableError(f"variables {left} still hold templates after {depth} passes (a cycle?)")
