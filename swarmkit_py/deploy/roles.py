"""Roles: folders of defaults, templates, steps and handlers, in Ansible's layout.

    roles/<name>/defaults/main.yml  variables, lowest precedence (the inventory overrides
                                    them; read by variables.py into every host's vars)
    roles/<name>/tasks/main.yml     steps: [{name, <module>: {args}, when?, notify?}, ...]
    roles/<name>/handlers/main.yml  steps run once at the end if a step notified them
    roles/<name>/templates/*.j2     jinja2, rendered with StrictUndefined (a missing variable
                                    is an error, never an empty string in a config file)

Steps are data so an operator can read what a role does without reading Python; the modules
they call (`modules.py`) are Python so each can be idempotent and check-mode aware.
"""

from __future__ import annotations

import inspect
import re
import weakref
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
import yaml

from . import modules, variables
from .inventory import Host
from .runner import Ctx
from .ssh import HostConn

MODULES = {"directory": modules.directory, "directories": modules.directories, "template": modules.template, "release": modules.release,
           "link": modules.link, "agent_service": modules.agent_service,
           "overlay_ready": modules.overlay_ready}


class Role:
    def __init__(self, name: str, base: Path = variables.ROLES_DIR):
        self.name = name
        self.dir = base / name
        if not self.dir.is_dir():
            raise ValueError(f"no role {name!r} in {base}")
        self.tasks = self._steps("tasks/main.yml")
        self.handlers = self._steps("handlers/main.yml")
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(self.dir / "templates"),
                                      undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                      trim_blocks=True, lstrip_blocks=True)

    def _steps(self, fname: str) -> list[dict]:
        p = self.dir / fname
        steps = (yaml.safe_load(p.read_text()) if p.exists() else None) or []
        for s in steps:
            mods = [k for k in s if k in MODULES]
            extra = set(s) - set(MODULES) - {"name", "when", "notify"}
            if len(mods) != 1 or extra:
                raise ValueError(f"{self.dir / fname}: step {s.get('name')!r} needs exactly one of "
                                 f"{sorted(MODULES)} (unknown keys: {sorted(extra)})")
            params = inspect.signature(MODULES[mods[0]]).parameters
            allowed = [n for n, prm in params.items() if n != "ctx" and prm.kind is prm.POSITIONAL_OR_KEYWORD]
            wrong = sorted(set(s[mods[0]] or {}) - set(allowed))
            if wrong:
                raise ValueError(f"{self.dir / fname}: step {s.get('name')!r}: {mods[0]} takes "
                                 f"{allowed or 'no arguments'}, not {wrong}")
        return steps

    def render(self, src: str, variables: dict) -> str:
        return self.env.get_template(src).render(**variables)


_COMPILED: weakref.WeakKeyDictionary[jinja2.Environment, dict[str, jinja2.Template]] = weakref.WeakKeyDictionary()


def _template(env: jinja2.Environment, value: str) -> jinja2.Template:
    """`env.from_string(value)`, compiled once per run: every host expands the same role
    arguments (jinja2 compiling them again for each host and step cost the operator ~0.1 s
    of CPU per bootstrap, on a machine the lab's hosts share). A template renders on any
    thread; two threads compiling the same one at once both get a good one."""
    cache = _COMPILED.setdefault(env, {})
    t = cache.get(value)
    if t is None:
        t = cache[value] = env.from_string(value)
    return t


def _expand(env: jinja2.Environment, value: Any, variables: dict) -> Any:
    if isinstance(value, str) and "{{" in value:
        return _template(env, value).render(**variables)
    if isinstance(value, dict):
        return {k: _expand(env, v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(env, v, variables) for v in value]
    return value


def gather_facts(ctx: Ctx) -> modules.Outcome:
    """One round trip: which service manager runs the host, the Python the venv needs, whether
    it has zstd, and what every later step will look at first (`ctx.probes`, answered from this round trip)."""
    py = ctx.vars["swarmkit_python"]
    # venv looked up, not imported (imported only when missing, for its error): importing
    # it cost every fresh host ~35 ms of CPU on its way (subprocess, sysconfig, logging...)
    cmd = (f"test -d /run/systemd/system && echo systemd || echo supervisor; "
           f"{py} -c 'import sys, importlib.util as u; u.find_spec(\"venv\") or exec(\"import venv\"); "
           f"print(\"%d.%d\" % sys.version_info[:2])'; "
           f"command -v zstd >/dev/null && echo zstd || echo no-zstd")
    ctx.conn.probe([cmd, *ctx.probes])  # and the looks of every step after this one
    r = ctx.conn.run(cmd)
    lines = r.stdout.split()
    if len(lines) < 3 or not re.fullmatch(r"\d+\.\d+", lines[1]):
        return "failed", f"{py} with the venv module is required on the host: {r.stderr.strip()}", ""
    want = ctx.vars["swarmkit_service_manager"]
    if want not in ("auto", "systemd", "supervisor"):
        return "failed", f"swarmkit_service_manager must be auto, systemd or supervisor (got {want!r})", ""
    ctx.facts["service_manager"] = lines[0] if want == "auto" else want
    ctx.facts["python"] = lines[1]
    ctx.facts["zstd"] = lines[2:3] == ["zstd"]  # can unpack a zstd site tar (wheelhouse.py)
    return "ok", "", ""


def plan(roles: list[Role], extra: dict[str, Any]):
    """A `steps_for(host, conn)` for Runner.play: the host's variables (role defaults and
    inventory, see variables.py) plus the run's, then the roles' steps and handlers in order,
    each bound to its module and rendered arguments."""

    def steps_for(host: Host, conn: HostConn):
        ctx = host_ctx(host, conn, **extra)
        if callable(extra.get("per_host")):
            ctx.vars.update(extra["per_host"](host))
        steps = [("gather facts", gather_facts)]
        handlers = []
        for r in roles:
            steps += [(_expand(r.env, s["name"], ctx.vars), _bind(r, s)) for s in r.tasks]
            handlers += [(s["name"], _bind(r, s)) for s in r.handlers]
            ctx.probes += [cmd for s in r.tasks for cmd in _looks(r, s, ctx.vars)]
        return ctx, steps, handlers

    return steps_for


def host_ctx(host: Host, conn: HostConn, **extra) -> Ctx:
    """A module context for `host`: its variables and the run's extras; facts not gathered."""
    return Ctx(host=host, conn=conn, vars={**host.vars, "inventory_hostname": host.name,
                                           "advertise_ip": host.advertise_ip, **extra})


def _looks(role: Role, step: dict, variables: dict) -> list[str]:
    """The read-only commands `step` starts with (modules.PROBES), from the host's variables;
    none when they depend on facts not gathered yet (the step then looks by itself)."""
    mod = next(k for k in step if k in MODULES)
    try:
        return modules.PROBES[mod](variables, **_expand(role.env, step[mod] or {}, variables))
    except Exception:  # an argument needs a fact, or a variable this run does not set
        return []


def _bind(role: Role, step: dict):
    mod = next(k for k in step if k in MODULES)

    def run(ctx: Ctx) -> modules.Outcome:
        facts_vars = {**ctx.vars, **ctx.facts}
        if "when" in step and not role.env.compile_expression(str(step["when"]))(**facts_vars):
            return "skipped", "", ""
        args = _expand(role.env, step[mod] or {}, facts_vars)
        fn = MODULES[mod]
        if mod == "template":
            fn = partial(fn, render=lambda src, v: role.render(src, {**v, **ctx.facts}))
        out = fn(ctx, **args)
        if out[0] == "changed" and step.get("notify"):
            for h in ([step["notify"]] if isinstance(step["notify"], str) else step["notify"]):
                ctx.notify(h)
        return out

    return run
