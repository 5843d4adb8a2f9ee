"""The step vocabulary roles are written in: directory, directories, template, release, link, agent_service,
overlay_ready.

Names are Ansible's only where the arguments are too: `template` takes Ansible's `src`, `dest`,
`mode` and means the same. The others are ours and named so no Ansible user expects the
arguments of a module they know (`directory` is not `file`, `agent_service` is not `service`:
it takes no unit name and its `reloaded` replaces the supervisor).

Every module first looks, then acts only if the host differs from what the role asks for,
and says which it was: ("ok" | "changed", message, diff). In check mode it looks and reports
"changed" for what it would do, touching nothing. That discipline is what makes a second
`bootstrap` report 0 changed, and `--check` trustworthy.
"""

from __future__ import annotations

import difflib
import re
import shlex
import time

from .runner import Ctx
from .ssh import HostConn
from .wheelhouse import SITE_INTERPRETER, SITE_SCRIPTS, pycache_name, site_unpack

Outcome = tuple[str, str, str]
OK: Outcome = ("ok", "", "")


# --- looks: the read-only commands modules start with ----------------------------------------
# One function per look, used by the module and by PROBES, so the commands `HostConn.probe`
# runs ahead are exactly those the modules then ask for.

def _dir_look(path: str) -> str:
    q = shlex.quote(path)
    return f"stat -c %a {q} 2>/dev/null && test -d {q}"


def _mode_look(path: str) -> str:
    return f"stat -c %a {shlex.quote(path)}"


def _release_marker(v: dict) -> str:
    return f"{v['swarmkit_root']}/releases/{v['wheelhouse'].version}/.swarmkit-release"


def _release_look(v: dict) -> str:
    return f"cat {_release_marker(v)} 2>/dev/null"


def _link_look(path: str) -> str:
    return f"readlink {shlex.quote(path)}"


def _unit_look(unit: str) -> str:
    return f"systemctl is-active --quiet {unit} && systemctl is-enabled --quiet {unit}"


_FORWARDING_FILE = "/proc/sys/net/ipv4/ip_forward"
_FORWARDING = f"cat {_FORWARDING_FILE}"
_ENGINE_NAT = "iptables -w -t nat -n -L DOCKER >/dev/null 2>&1"
_VXLAN_USERS = "ss -Hlunp 'sport = :4789' 2>/dev/null | grep users:"
_IPROUTE2 = "command -v ip >/dev/null && command -v bridge >/dev/null"


def directory(ctx: Ctx, path: str, mode: str = "0755") -> Outcome:
    """`path` exists as a directory with exactly `mode` (parents made as needed)."""
    q = shlex.quote(path)
    r = ctx.conn.run(_dir_look(path), changes=())
    if r.rc == 0 and r.stdout.strip() == mode.lstrip("0"):
        return OK
    if not ctx.check:
        r = ctx.conn.run(f"mkdir -p {q} && chmod {mode} {q}", changes=(path,))
        if r.rc:
            return "failed", r.stderr.strip(), ""
    return "changed", path, ""


def directories(ctx: Ctx, dirs: list) -> Outcome:
    """Each of `dirs` ({path, mode}) exists as a directory with exactly its mode, made or
    fixed by ONE command for all that differ (each costs a fresh host an SSH session
    otherwise); their looks are the same as `directory`'s, so the probe answers them. A
    parent listed before its children is made with its own mode (`mkdir -p` would give it
    the default one)."""
    todo = []
    for i, d in enumerate(dirs or []):
        if not isinstance(d, dict) or set(d) - {"path", "mode"} or not isinstance(d.get("path"), str):
            return "failed", f"dirs[{i}] must be {{path, mode}} (mode optional, default 0755), not {d!r}", ""
        path, mode = d["path"], str(d.get("mode", "0755"))
        if not re.fullmatch(r"0?[0-7]{3,4}", mode):
            return "failed", f"dirs[{i}] ({path}): mode must be octal such as 0755, not {mode!r}", ""
        r = ctx.conn.run(_dir_look(path), changes=())
        if not (r.rc == 0 and r.stdout.strip() == mode.lstrip("0")):
            todo.append((path, mode))
    if not todo:
        return OK
    if not ctx.check:
        cmd = " && ".join(f"mkdir -p {shlex.quote(p)} && chmod {m} {shlex.quote(p)}" for p, m in todo)
        r = ctx.conn.run(cmd, changes=tuple(p for p, _ in todo))
        if r.rc:
            return "failed", r.stderr.strip(), ""
    return "changed", ", ".join(p for p, _ in todo), ""


def template(ctx: Ctx, src: str, dest: str, mode: str = "0644", *, render) -> Outcome:
    """Render `src` from the role's templates and make `dest` hold exactly that."""
    want = render(src, ctx.vars)
    have_b = ctx.conn.read(dest)
    have = have_b.decode(errors="replace") if have_b is not None else None
    q = shlex.quote(dest)
    same_mode = ctx.conn.run(_mode_look(dest), changes=()).stdout.strip() == mode.lstrip("0") if have is not None else False
    if have == want and same_mode:
        return OK
    diff = "".join(difflib.unified_diff((have or "").splitlines(True), want.splitlines(True),
                                        f"{ctx.host.name}:{dest} (now)", f"{ctx.host.name}:{dest} (wanted)"))
    if have == want:
        diff = f"--- mode of {dest}: now {ctx.conn.run(f'stat -c %a {q}', changes=()).stdout.strip()}, wanted {mode}\n"
    if not ctx.check:
        ctx.conn.put(want, dest, int(mode, 8))
    return "changed", dest, diff


def release(ctx: Ctx) -> Outcome:
    """Install the wheelhouse as /opt/.../releases/<version> (a venv). The marker file holding
    the wheelhouse's checksum is written last, so a half-finished install is redone, never
    trusted. What the host installs from is uploaded only when its checksum on the host
    differs, and checked against the checksum known here before anything is unpacked, so a
    host never runs a corrupted or tampered tree.

    A host with the operator's Python gets the release's site tar (wheelhouse.py): the venv is
    made, the tar unpacked into it, and the console scripts' `#!` line pointed at the venv's
    python. Other hosts get the wheelhouse and install its wheels with pypa's `installer`."""
    wh = ctx.vars["wheelhouse"]
    root = ctx.vars["swarmkit_root"]
    rel = f"{root}/releases/{wh.version}"
    marker = f"{rel}/.swarmkit-release"
    r = ctx.conn.run(_release_look(ctx.vars), changes=())
    if r.stdout.strip() == wh.sha256:
        return OK
    if ctx.check:
        return "changed", f"would install release {wh.version}", ""
    py = ctx.vars["swarmkit_python"]
    pyver = ctx.facts.get("python", "")
    formats = ("zst", "gz") if ctx.facts.get("zstd") else ("gz",)
    site = wh.site(pyver, formats) if pyver and _simple_interpreter(f"{rel}/bin/python") else None
    if site is not None:
        local, sha = site
        remote = f"{root}/wheelhouse/{local.name.removeprefix('swarmkit-py-')}"
        scripts = f"{rel}/{SITE_SCRIPTS}"
        sed = shlex.quote(f"1s|^#!{SITE_INTERPRETER}$|#!{rel}/bin/python|")
        unpack = site_unpack(local.name.rsplit(".", 1)[1], remote, rel)
        install = (f"{py} -m venv --without-pip {rel}; {unpack}; "
                   f"s=$(cat {scripts}); if [ -n \"$s\" ]; then cd {rel}/bin; sed -i {sed} $s; cd /; fi; ")
        how = "installed release"
        temps: tuple[str, ...] = ()
    else:
        local, sha = wh.tar, wh.sha256
        remote = f"{root}/wheelhouse/{wh.version}.tar"
        install = _install_wheels(wh, remote, rel, py, pyver)
        how = "installed release (wheels)"
        temps = (f"{_wheels_tmp(wh)}/",)
    have = ctx.conn.run(f"sha256sum {remote} 2>/dev/null", changes=()).stdout.split()
    uploaded = ""
    gate = ctx.vars.get("upload_gate")  # bootstrap's UploadGate: one host's upload first
    if not have or have[0] != sha:
        if gate is not None:
            gate.wait(ctx.host)
        try:
            ctx.conn.put_file(str(local), remote, 0o644)
        finally:
            if gate is not None:
                gate.done(ctx.host)
        uploaded = f"uploaded {local.name}, "
    elif gate is not None:
        gate.done(ctx.host)
    check = (f"echo '{sha}  {remote}' | sha256sum -c --status - || "
             f"{{ echo '{remote} does not have the sha256 of {local.name} ({sha}): damaged or altered "
             f"on the host; run again to upload it anew' >&2; rm -f {remote}; exit 1; }}; ")
    r = ctx.conn.run(f"set -e; {check}rm -rf {rel}; {install}echo {wh.sha256} > {marker}", timeout=600,
                     changes=(remote, f"{rel}/", *temps))
    if r.rc:
        return "failed", f"install of {wh.version} failed: {r.stderr.strip()[-500:]}", ""
    return "changed", f"{uploaded}{how} {wh.version}", ""


def _simple_interpreter(path: str) -> bool:
    """`path` can go on a `#!` line as it is (short, no blanks) and into a sed replacement."""
    return len(path) <= 125 and not any(c in path for c in " \t\n|&\\'")


def _wheels_tmp(wh) -> str:
    return f"/tmp/skpy-wheels-{wh.version}"


def _install_wheels(wh, tar: str, rel: str, py: str, pyver: str) -> str:
    """The shell that installs the wheelhouse `tar` into a new venv `rel`: pypa's installer
    when the wheelhouse carries it, pip for wheelhouses built before it did; and the modules
    compiled on the operator's side when the wheelhouse carries them (built before site tars)."""
    tmp = _wheels_tmp(wh)
    wheels = f"$(ls {tmp}/*.whl | grep -v -e /pip- -e /installer-)"
    pc = f"{tmp}/{pycache_name(pyver)}"
    pycache = (f"if [ -f {pc} ]; then tar -xzf {pc} -C {rel}/lib/python{pyver}/site-packages; fi; "
               if pyver else "")
    return (f"rm -rf {tmp}; mkdir -p {tmp}; tar -xf {tar} -C {tmp}; "
            f"{py} -m venv --without-pip {rel}; "
            f"if ls {tmp}/installer-*.whl >/dev/null 2>&1; then "
            f"PYTHONPATH=$(ls {tmp}/installer-*.whl) {rel}/bin/python -m installer --no-compile-bytecode {wheels}; "
            f"else PIP_CONFIG_FILE=/dev/null {rel}/bin/python $(ls {tmp}/pip-*.whl)/pip install -q --no-index "
            f"--no-deps --no-compile --disable-pip-version-check {wheels}; fi; "
            f"{pycache}rm -rf {tmp}; ")


def link(ctx: Ctx, path: str, target: str) -> Outcome:
    """Point the `path` symlink at `target` atomically (new link + rename over the old one),
    so the agent's supervisor never sees a missing `current`."""
    q, t = shlex.quote(path), shlex.quote(target)
    if ctx.conn.run(_link_look(path), changes=()).stdout.strip() == target:
        return OK
    if not ctx.check:
        r = ctx.conn.run(f"ln -sfn {t} {q}.skpy-new && mv -T {q}.skpy-new {q}", changes=(path, f"{path}.skpy-new"))
        if r.rc:
            return "failed", r.stderr.strip(), ""
    return "changed", f"{path} -> {target}", ""


# --- the agent's service: systemd where it runs, else the supervisor fallback -----------------

def pidfile(v: dict, who: str) -> str:
    """The supervisor's pidfiles (`who`: supervisor | agent), as autostart.sh.j2 writes them."""
    return f"{v['swarmkit_run_dir']}/{who}.pid"


def alive(v: dict, who: str) -> str:
    """A shell test: the process named in `who`'s pidfile is running."""
    return f"p=$(cat {pidfile(v, who)} 2>/dev/null) && kill -0 \"$p\" 2>/dev/null"


def agent_service(ctx: Ctx, state: str = "started") -> Outcome:
    """state: started (enabled, running) | restarted (the agent) | reloaded (the supervisor
    or unit itself changed: stop it and start the new one).

    On a swarm member, bootstrap defers restarts (`defer_restart`): restarting every manager
    at once would drop quorum, so the caller restarts them one at a time afterwards."""
    pending = ctx.vars.get("pending_restarts")
    if state != "started" and ctx.vars.get("defer_restart") and pending is not None \
            and "agent" not in ctx.started:
        if not ctx.check:
            pending[ctx.host.name] = "reloaded" if state == "reloaded" or pending.get(ctx.host.name) == "reloaded" \
                else "restarted"
        return "changed", "restart deferred to a rolling restart (swarm member)", ""
    if state not in ("started", "restarted", "reloaded"):
        raise ValueError(f"agent_service: state must be started, restarted or reloaded (got {state!r})")
    if ctx.facts["service_manager"] == "systemd":
        return _systemd(ctx, state)
    return _supervisor(ctx, state)


def _supervisor(ctx: Ctx, state: str) -> Outcome:
    if state != "started" and "agent" in ctx.started:
        return OK  # started with the new files moments ago
    running = ctx.conn.run(alive(ctx.vars, "supervisor"), changes=()).rc == 0
    if state == "started":
        if running:
            return OK
        if not ctx.check:
            _sup_start(ctx)
            ctx.started.add("agent")
        return "changed", "started the agent's supervisor", ""
    if ctx.check:
        return "changed", f"would {state[:-2]} the agent", ""
    if not running:
        _sup_start(ctx)
        return "changed", "started the agent's supervisor", ""
    sup = pidfile(ctx.vars, "supervisor")
    if state == "restarted":  # SIGHUP: the supervisor restarts the agent at once
        ctx.conn.run(f"kill -HUP $(cat {sup})")
        return "changed", "restarted the agent", ""
    ctx.conn.run(f"kill -TERM $(cat {sup})")
    _wait_shell(ctx, f"! ( {alive(ctx.vars, 'supervisor')} )", 20, "the old supervisor to stop")
    _sup_start(ctx)
    return "changed", "replaced the supervisor", ""


def _sup_start(ctx: Ctx) -> None:
    v = ctx.vars
    logs, sup = v["swarmkit_log_dir"], v["swarmkit_supervisor"]
    # started, and waited for, in one round trip (each costs the host an sshd session and a
    # shell: about 20 ms of its CPU on the lab, seven hosts at once)
    r = ctx.conn.run(f"mkdir -p {logs} && setsid -f {sup} >>{logs}/autostart.log 2>&1 </dev/null || exit 1; "
                     f"i=0; until {alive(v, 'supervisor')}; do [ $i -ge 200 ] && exit 3; sleep 0.05; "
                     "i=$((i + 1)); done")
    if r.rc == 3:
        raise RuntimeError(f"timed out after 10s waiting for the supervisor's pidfile {pidfile(v, 'supervisor')}")
    if r.rc:
        raise RuntimeError(f"could not start {sup}: {r.stderr.strip()}")


def _wait_shell(ctx: Ctx, cond: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while ctx.conn.run(cond, changes=()).rc != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def overlay_ready(ctx: Ctx) -> Outcome:
    """The host can carry overlay networks and the routing mesh, as the lab's hosts do: IPv4
    forwarding on (turned on if off), the Docker engine managing its iptables rules (its nat
    `DOCKER` chain exists; an engine started with --iptables=false cannot publish ports and
    is refused with what to change), iproute2's `ip` and `bridge` there (the agent programs
    the overlay's links with them), and the VXLAN port free for the kernel."""
    if ctx.conn.run(_IPROUTE2, changes=()).rc != 0:
        return ("failed", "iproute2's ip and bridge commands are missing (the agent programs overlay links "
                "with them): install the iproute2 package and run the role again", "")
    fwd = ctx.conn.run(_FORWARDING, changes=()).stdout.strip()
    engine = ctx.conn.run(_ENGINE_NAT, changes=())
    if engine.rc != 0:
        return ("failed", "the Docker engine does not manage iptables here (no nat DOCKER chain): "
                "start dockerd with its networking defaults (no --iptables=false, no "
                "--bridge=none) and run the role again", "")
    # The kernel's own VXLAN sockets (ours, from an earlier run) have no owning process; a
    # user-space program holding the port shows up with `users:`.
    busy = ctx.conn.run(_VXLAN_USERS, changes=()).stdout.strip()
    if busy:
        return "failed", f"UDP 4789 (VXLAN) is taken by another program: {busy}", ""
    if fwd == "1":
        return OK
    if not ctx.check:
        r = ctx.conn.run("sysctl -qw net.ipv4.ip_forward=1", changes=(_FORWARDING_FILE,))
        if r.rc:
            return "failed", r.stderr.strip(), ""
    return "changed", "net.ipv4.ip_forward=1", ""


def _systemd(ctx: Ctx, state: str) -> Outcome:
    unit = ctx.vars["swarmkit_unit"]
    if state == "started":
        active = ctx.conn.run(_unit_look(unit), changes=())
        if active.rc == 0:
            return OK
        if not ctx.check:
            r = ctx.conn.run(f"systemctl daemon-reload && systemctl enable --now {unit}")
            if r.rc:
                return "failed", r.stderr.strip(), ""
            ctx.started.add("agent")
        return "changed", f"enabled and started {unit}", ""
    if "agent" in ctx.started:
        return OK
    if ctx.check:
        return "changed", f"would restart {unit}", ""
    r = ctx.conn.run(f"systemctl daemon-reload && systemctl restart {unit}")
    if r.rc:
        return "failed", r.stderr.strip(), ""
    return "changed", f"restarted {unit}", ""


PROBES = {
    "directory": lambda v, path, mode="0755": [(_dir_look(path), [path])],
    "directories": lambda v, dirs: [(_dir_look(d["path"]), [d["path"]]) for d in dirs],
    "template": lambda v, src, dest, mode="0644": [(HostConn.read_cmd(dest), [dest]), (_mode_look(dest), [dest])],
    "release": lambda v: [(_release_look(v), [_release_marker(v)])],
    "link": lambda v, path, target: [(_link_look(path), [path])],
    "agent_service": lambda v, state="started": [(alive(v, "supervisor"), [pidfile(v, "supervisor"), "@processes"]),
                                                 (_unit_look(v["swarmkit_unit"]), ["@systemd"])],
    "overlay_ready": lambda v: [(_FORWARDING, [_FORWARDING_FILE]), (_ENGINE_NAT, ["@iptables"]),
                                (_VXLAN_USERS, ["@sockets"])],
}
"""module -> (host vars, the step's arguments) -> the looks it starts with, each with what it
reads (HostConn.probe), probed with the facts (roles.gather_facts) so a run that changes
nothing costs one round trip per host, and a fresh host's changes drop only the answers
about what they changed. A module's changes say the paths they touch (`changes=`); those
that start or stop processes say nothing, so every answer is dropped then."""
