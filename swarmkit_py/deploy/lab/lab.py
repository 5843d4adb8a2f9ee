"""The Lab: N SSH hosts on this machine that a deployment cannot tell from VMs.

Every operation is idempotent and keyed by the lab's name, so tests and a demo lab can run
side by side and a half-finished `up` (or a crash of the operator's shell) is repaired by
running `up` again. See the package docstring for the boot hook and the fault model.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ... import taskimage
from .. import variables
from . import boot, cgroups, inventory, net, ssh
from .names import (
    DEFAULT_LAB,
    MAX_HOSTS,
    LabNames,
    check_name,
    gateway,
    host_address,
    host_index,
    host_name,
    preferred_subnet,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


class LabError(RuntimeError):
    """A refusal or failure with a message meant for the operator."""


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    state: str  # running | frozen | crashed
    pid: int | None  # the host's PID 1, as seen from the machine
    docker: bool


USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
INITS = ("tini", "systemd")


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                       check=True, capture_output=True)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root: it creates network namespaces, a bridge, veth pairs, iptables "
            "rules, cgroups and mounts. Run it as root (e.g. `sudo .venv/bin/invoke lab.up`)."
        )


def _wait(what: str, cond, timeout: float, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _ssh_banner(addr: str) -> bool:
    try:
        with socket.create_connection((addr, 22), timeout=0.5) as s:
            s.settimeout(1.0)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _docker_ping(sock: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1.0)
            s.connect(sock)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return s.recv(64).split(b"\r\n", 1)[0].endswith(b"200 OK")
    except OSError:
        return False


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or under `path` in the machine's mount table."""
    prefix = str(path)
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mnt = line.split()[1].replace("\\040", " ")
        if mnt == prefix or mnt.startswith(prefix + "/"):
            out.append(mnt)
    return out


def _mounted(path: Path) -> bool:
    return str(path) in _mounts_under(path)


class Lab:
    """A named lab. State (keys, per-host overlay uppers, Docker data roots) lives in
    `state_dir` (default `<repo>/.lab/<name>`, or `$SWARMKIT_LAB_DIR/<name>`)."""

    def __init__(self, name: str = DEFAULT_LAB, state_dir: Path | str | None = None,
                 subnet: str | None = None, inventory_path: Path | str | None = None):
        self.name = check_name(name)
        self.names = LabNames(name)
        base = Path(os.environ.get("SWARMKIT_LAB_DIR", REPO_ROOT / ".lab"))
        self.state_dir = Path(state_dir) if state_dir else base / name
        self.state_dir = self.state_dir.absolute()
        self._subnet_arg = ipaddress.IPv4Network(subnet) if subnet else None
        if inventory_path is not None:
            self.inventory_path = Path(inventory_path).absolute()
        elif name == DEFAULT_LAB:
            self.inventory_path = REPO_ROOT / "inventories" / "lab" / "hosts.yml"
        else:
            self.inventory_path = self.state_dir / "hosts.yml"

    # --- files in the state dir -------------------------------------------------------------

    @property
    def key(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def login_key(self) -> Path:
        """The login user's own key (`up(user=...)` other than root)."""
        return self.state_dir / "login_ed25519"

    @property
    def login_password(self) -> Path:
        """The login user's password, which its sudo asks for (0600)."""
        return self.state_dir / "login_password"

    @property
    def login_user(self) -> str:
        cfg = self._config()
        return cfg.get("user", "root") if cfg else "root"

    @property
    def init(self) -> str:
        cfg = self._config()
        return cfg.get("init", "tini") if cfg else "tini"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def image_archive(self) -> Path:
        return self.state_dir / "images" / "busybox.tar"

    def host_dir(self, host: str) -> Path:
        return self.state_dir / "hosts" / host

    def _config_path(self) -> Path:
        return self.state_dir / "lab.json"

    def _config(self) -> dict | None:
        try:
            return json.loads(self._config_path().read_text())
        except FileNotFoundError:
            return None

    def _save_config(self, cfg: dict) -> None:
        tmp = self._config_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(cfg, indent=2) + "\n")
        tmp.replace(self._config_path())

    def _require_config(self) -> dict:
        cfg = self._config()
        if cfg is None:
            raise LabError(f"lab {self.name!r} is not up (no {self._config_path()}); run lab.up first")
        return cfg

    @contextlib.contextmanager
    def _locked(self):
        """One lab operation at a time: two `up`s racing would launch a host twice."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self._require_config()["subnet"])

    def _choose_subnet(self) -> ipaddress.IPv4Network:
        used = net.used_networks(exclude_dev=self.names.bridge)
        if self._subnet_arg:
            clash = [u for u in used if u.overlaps(self._subnet_arg)]
            if clash:
                raise LabError(f"subnet {self._subnet_arg} overlaps {clash[0]} already on this machine")
            return self._subnet_arg
        s = preferred_subnet(self.name)
        for _ in range(256):
            if not any(u.overlaps(s) for u in used):
                return s
            third = (int(str(s.network_address).split(".")[2]) + 1) % 256
            s = ipaddress.IPv4Network(f"10.77.{third}.0/24")
        raise LabError("no free /24 in 10.77.0.0/16; pass a subnet")

    # --- cgroups and processes -------------------------------------------------------------

    @property
    def cgroup(self) -> Path:
        return cgroups.v2_root() / self.names.cgroup

    def host_cgroup(self, host: str) -> Path:
        return self.cgroup / host

    def init_pid(self, host: str) -> int | None:
        """The host's PID 1: the process of its cgroup that is PID 1 in its own namespace."""
        for pid in cgroups.procs(self.host_cgroup(host)):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("NSpid:"):
                        ids = line.split()[1:]
                        if len(ids) == 2 and ids[1] == "1":
                            return pid
            except OSError:
                continue
        return None

    def docker_host(self, host: str) -> str:
        """DOCKER_HOST for the host's own engine, usable from the machine."""
        pid = self.init_pid(host)
        if pid is None:
            raise LabError(f"{host} is not running")
        return f"unix:///proc/{pid}/root/run/docker.sock"

    def memory_mib(self, host: str) -> float:
        """Proportional set size of every process of the host (shared pages split fairly)."""
        total = 0
        for pid in cgroups.procs(self.host_cgroup(host)):
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
            except OSError:
                continue
        return total / 1024

    # --- queries ------------------------------------------------------------------------------

    def host_names(self) -> list[str]:
        cfg = self._config()
        if not cfg:
            return []
        return sorted(cfg["hosts"], key=host_index)

    def address(self, host: str) -> str:
        cfg = self._require_config()
        if host not in cfg["hosts"]:
            raise LabError(f"lab {self.name!r} has no host {host!r} (hosts: {', '.join(self.host_names())})")
        return str(host_address(ipaddress.IPv4Network(cfg["subnet"]), host_index(host)))

    def hosts(self) -> list[Host]:
        cfg = self._config()
        if not cfg:
            return []
        out = []
        for h in self.host_names():
            pid = self.init_pid(h)
            state = ("frozen" if cgroups.frozen(self.host_cgroup(h)) else "running") if pid else "crashed"
            out.append(Host(h, self.address(h), state, pid,
                            bool(cfg["hosts"][h].get("docker", True))))
        return out

    def partitions(self) -> list[tuple[str, str]]:
        """(source, destination) address pairs currently dropped."""
        pairs = []
        for r in net.tagged_rules(self.names.partition_tag):
            src = r[r.index("-s") + 1].removesuffix("/32")
            dst = r[r.index("-d") + 1].removesuffix("/32")
            pairs.append((src, dst))
        return pairs

    # --- operations ---------------------------------------------------------------------------

    def up(self, n: int = 7, docker: bool = True, timeout: float = 90.0, user: str = "root",
           init: str = "tini", disks: dict[str, int] | None = None) -> dict[str, str]:
        """Make hosts h1..hN exist and run; returns per host 'started' or 'running'.
        `user` other than root: the inventory logs in as that user, with its own key, and
        becomes root with sudo, which asks for the user's password (`login_password`).
        `init`: tini (sshd and dockerd under tini; the agent role falls back to its
        supervisor) or systemd (PID 1 is systemd, as on a cloud image). `disks`: host -> MiB,
        a small disk for the agent's state dir from the first boot on (see `set_disk`)."""
        _require_root()
        if not 1 <= n <= MAX_HOSTS:
            raise LabError(f"--hosts must be between 1 and {MAX_HOSTS}")
        if not USER_RE.fullmatch(user):
            raise LabError(f"--user {user!r}: a login name is lowercase letters, digits, '_' or '-', "
                           "starting with a letter or '_' (at most 32)")
        if init not in INITS:
            raise LabError(f"--init {init!r}: one of {', '.join(INITS)}")
        with self._locked():
            cfg = self._config()
            if cfg is None:
                cfg = {"name": self.name, "subnet": str(self._choose_subnet()), "hosts": {}, "user": user,
                       "init": init}
            elif self._subnet_arg and str(self._subnet_arg) != cfg["subnet"]:
                raise LabError(f"lab {self.name!r} already uses {cfg['subnet']}; lab.down first to change it")
            elif cfg.get("user", "root") != user:
                raise LabError(f"lab {self.name!r} logs in as {cfg.get('user', 'root')!r}, not {user!r}; "
                               "lab.down first to change it")
            elif cfg.get("init", "tini") != init:
                raise LabError(f"lab {self.name!r} boots with {cfg.get('init', 'tini')!r}, not {init!r}; "
                               "lab.down first to change it")
            for i in range(1, n + 1):
                cfg["hosts"].setdefault(host_name(i), {"docker": docker})
            for h, mib in (disks or {}).items():
                if h not in cfg["hosts"]:
                    raise LabError(f"--disk {h}: the lab has hosts h1..h{n} only")
                cfg["hosts"][h]["disk"] = self._disk_entry(mib, None)
            self._save_config(cfg)
            subnet = ipaddress.IPv4Network(cfg["subnet"])

            _keygen(self.key, f"operator@swarmkit-py-lab-{self.name}")
            if user != "root":
                _keygen(self.login_key, f"{user}@swarmkit-py-lab-{self.name}")
                if not self.login_password.exists():
                    fd = os.open(self.login_password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as f:
                        f.write(secrets.token_urlsafe(18) + "\n")
            self._write_etc_hosts(cfg)
            net.ensure_bridge(self.names.bridge, gateway(subnet), subnet)
            net.ensure_forward_accept(self.names.bridge, self.names.rule_tag)
            cgroups.ensure(self.cgroup)

            result = {}
            for h in self.host_names():
                if self.init_pid(h):
                    result[h] = "running"
                    self._refresh_etc_hosts(h)
                    continue
                self._boot(h, cfg)
                result[h] = "started"
            self._write_access_files()
            self._wait_ready(list(result), timeout)
            return result

    def _write_etc_hosts(self, cfg: dict) -> None:
        subnet = ipaddress.IPv4Network(cfg["subnet"])
        lines = ["127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n",
                 f"{gateway(subnet)}\tlab-controller\n"]
        lines += [f"{host_address(subnet, host_index(h))}\t{h}\n" for h in self.host_names()]
        (self.state_dir / "etc-hosts").write_text("".join(lines))

    def _refresh_etc_hosts(self, host: str) -> None:
        """A running host learns about hosts added after it booted, as DNS would tell it."""
        pid = self.init_pid(host)
        if pid:
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/root/etc/hosts").write_text((self.state_dir / "etc-hosts").read_text())

    def _boot(self, host: str, cfg: dict) -> None:
        subnet = ipaddress.IPv4Network(cfg["subnet"])
        addr = host_address(subnet, host_index(host))
        hdir = self.host_dir(host)
        init = cfg.get("init", "tini")
        leaf = self.host_cgroup(host) / "init"
        disk = cfg["hosts"][host].get("disk")
        if disk:
            self._mount_disk(host, disk["mib"])
        boot.write_host_files(hdir, self.state_dir, host, str(addr), bool(cfg["hosts"][host].get("docker", True)),
                              self.names.cgroup_parent(host), login_user=cfg.get("user", "root"), init=init,
                              cgroup_leaf=leaf, disk_path=disk["path"] if disk else "")
        if cgroups.frozen(self.host_cgroup(host)):
            cgroups.set_frozen(self.host_cgroup(host), False)  # a host frozen when it was cut off
        net.ensure_host_link(self.names.bridge, self.names.veth(host), self.names.netns(host),
                             addr, subnet.prefixlen)
        # The host's own processes sit in a leaf: on a pure cgroup v2 machine dockerd must be
        # able to enable controllers in the host's cgroup for its containers (siblings of
        # "init"), which the kernel refuses while the cgroup itself holds processes.
        cg = cgroups.ensure(leaf)
        boot.launch(hdir, self.names.netns(host), cg, init=init)

    def _write_access_files(self) -> None:
        entries = [(h, self.address(h), self.host_dir(h) / "ssh_host_ed25519_key.pub")
                   for h in self.host_names()]
        self.known_hosts.write_text(inventory.known_hosts_lines(entries))
        user = self.login_user
        login = None if user == "root" else inventory.Login(user, self.login_key, self.login_password)
        inventory.write_inventory(self.inventory_path, self.name,
                                  [(h, a) for h, a, _ in entries], self.key, self.known_hosts, login)

    def _wait_ready(self, hosts: list[str], timeout: float) -> None:
        """SSH answering on every host, then every engine answering and holding the image."""
        cfg = self._require_config()
        for h in hosts:
            addr = self.address(h)
            _wait(f"sshd on {h} ({addr}:22); see {self.host_dir(h) / 'console.log'}",
                  lambda a=addr: _ssh_banner(a), timeout)
        dockers = [h for h in hosts if cfg["hosts"][h].get("docker", True)]
        if not dockers:
            return
        archive = taskimage.build(self.image_archive)

        def engine(h: str) -> str:
            pid = _wait(f"{h} to be running", lambda: self.init_pid(h), timeout)
            sock = f"/proc/{pid}/root/run/docker.sock"
            _wait(f"dockerd on {h}; see {self.host_dir(h) / 'upper/var/log/dockerd.log'}",
                  lambda: _docker_ping(sock), timeout, interval=0.05)
            return taskimage.load(f"unix://{sock}", archive)

        with ThreadPoolExecutor(max_workers=len(dockers)) as ex:
            list(ex.map(engine, dockers))

    def crash(self, host: str) -> float:
        """Power cut: the veth goes down first so peers hear no FIN/RST, then every process of
        the host dies at once. Returns the seconds the kill took."""
        _require_root()
        self.address(host)
        with self._locked():
            net.set_link(self.names.veth(host), up=False)
            took = cgroups.kill(self.host_cgroup(host))
            if cgroups.frozen(self.host_cgroup(host)):
                cgroups.set_frozen(self.host_cgroup(host), False)  # so its next boot runs
            return took

    def restart(self, host: str, timeout: float = 60.0, wait_docker: bool = False) -> str:
        """Boot a crashed host again on the same state dir: overlay uppers and the Docker
        data root persist, /run and /tmp are fresh, the agent role's boot hook runs."""
        _require_root()
        self.address(host)
        with self._locked():
            if self.init_pid(host):
                return "running"
            cfg = self._require_config()
            if cgroups.populated(self.host_cgroup(host)):
                cgroups.kill(self.host_cgroup(host))  # half-dead host: finish it first
            self._boot(host, cfg)
            addr = self.address(host)
            _wait(f"sshd on {host} ({addr}:22)", lambda: _ssh_banner(addr), timeout)
            if wait_docker and cfg["hosts"][host].get("docker", True):
                pid = self.init_pid(host)
                _wait(f"dockerd on {host}", lambda: _docker_ping(f"/proc/{pid}/root/run/docker.sock"),
                      timeout, interval=0.05)
            return "started"

    def freeze(self, host: str) -> float:
        """Pause every process of the host at once (the cgroup freezer): its sockets stay open
        and its peers hear nothing, as with a VM paused by its hypervisor or a process stuck
        in a long GC pause; `thaw` resumes it where it stopped. Returns the seconds taken."""
        _require_root()
        self.address(host)
        with self._locked():
            if not self.init_pid(host):
                raise LabError(f"{host} is not running; only a running host can be frozen")
            return cgroups.set_frozen(self.host_cgroup(host), True)

    def thaw(self, host: str) -> float:
        """Resume a frozen host; its clocks jumped while it slept, its timers fire late."""
        _require_root()
        self.address(host)
        with self._locked():
            return cgroups.set_frozen(self.host_cgroup(host), False)

    # --- small disks ---------------------------------------------------------------------------

    FILLER = ".lab-disk-filler"

    def disk_dir(self, host: str) -> Path:
        return self.host_dir(host) / "disk"

    @staticmethod
    def _disk_entry(mib: int, path: str | None) -> dict:
        if not isinstance(mib, int) or isinstance(mib, bool) or not 1 <= mib <= 4096:
            raise LabError(f"a small disk is 1 to 4096 MiB, not {mib!r}")
        path = path or str(variables.resolve(variables.role_defaults())["swarmkit_state_dir"])
        if not path.startswith("/var/lib/") or ".." in path.split("/"):
            raise LabError(f"a small disk is mounted under /var/lib (the host's persistent overlay), not {path!r}")
        return {"mib": mib, "path": path}

    def set_disk(self, host: str, mib: int, path: str | None = None) -> str:
        """Give HOST a small disk of `mib` MiB at `path` (default the agent's state dir,
        /var/lib/swarmkit-py): a size-limited tmpfs the lab mounts on the machine side, so it
        survives the host's crashes, bound over `path` at every boot. Set it before the agent
        is installed: the files already at `path` are hidden under it. It takes effect at the
        host's next boot (`up`, or `crash` + `restart`); returns where it is mounted."""
        _require_root()
        self.address(host)
        with self._locked():
            cfg = self._require_config()
            cfg["hosts"][host]["disk"] = self._disk_entry(mib, path)
            self._save_config(cfg)
            self._mount_disk(host, mib)
        return str(self.disk_dir(host))

    def _mount_disk(self, host: str, mib: int) -> None:
        d = self.disk_dir(host)
        d.mkdir(parents=True, exist_ok=True)
        opts = f"size={mib}m,mode=0700"
        if _mounted(d):
            net.run("mount", "-o", f"remount,{opts}", str(d))
        else:
            net.run("mount", "-t", "tmpfs", "-o", opts, f"skpy-{self.name}-{host}-disk", str(d))

    def _disk(self, host: str) -> Path:
        self.address(host)
        if not self._require_config()["hosts"][host].get("disk") or not _mounted(self.disk_dir(host)):
            raise LabError(f"{host} has no small disk; give it one with set_disk (lab.disk {host} --mib N)")
        return self.disk_dir(host)

    def fill_disk(self, host: str) -> int:
        """Fill the host's small disk to the last byte (a file the agent does not know); the
        agent's next write fails with ENOSPC. Returns the bytes the filler holds."""
        _require_root()
        filler = self._disk(host) / self.FILLER
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            st = os.statvfs(filler)
            with contextlib.suppress(OSError):
                os.posix_fallocate(fd, os.fstat(fd).st_size, st.f_bavail * st.f_frsize)
            chunk = 4096
            while chunk:  # whatever fallocate left, down to the last byte
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError:
                    chunk //= 2
        finally:
            os.close(fd)
        return filler.stat().st_size

    def free_disk(self, host: str) -> int:
        """Remove the filler: the space comes back. Returns the bytes freed."""
        _require_root()
        filler = self._disk(host) / self.FILLER
        try:
            size = filler.stat().st_size
        except FileNotFoundError:
            return 0
        filler.unlink()
        return size

    def disk_usage(self, host: str) -> tuple[int, int] | None:
        """(bytes used, bytes total) of the host's small disk, None if it has none."""
        d = self.disk_dir(host)
        if not _mounted(d):
            return None
        st = os.statvfs(d)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize

    def _unmount_disks(self) -> list[str]:
        left = []
        for d in sorted((self.state_dir / "hosts").glob("*/disk")) if (self.state_dir / "hosts").is_dir() else []:
            if _mounted(d) and net.run("umount", str(d), check=False).returncode != 0:
                net.run("umount", "-l", str(d), check=False)
            if _mounted(d):
                left.append(str(d))
        return left

    def partition(self, *hosts: str) -> list[tuple[str, str]]:
        """Cut `hosts` off from the other lab hosts (both directions). The controller still
        reaches everyone, like an out-of-band management network."""
        _require_root()
        cfg = self._require_config()
        if not hosts:
            raise LabError("name at least one host to partition")
        for h in hosts:
            self.address(h)
        inside = set(hosts)
        outside = [h for h in cfg["hosts"] if h not in inside]
        with self._locked():
            for a in sorted(inside, key=host_index):
                for b in sorted(outside, key=host_index):
                    net.add_drop(self.names.bridge, self.names.partition_tag, self.address(a), self.address(b))
                    net.add_drop(self.names.bridge, self.names.partition_tag, self.address(b), self.address(a))
        return self.partitions()

    def heal(self) -> int:
        """Remove every partition rule of this lab; returns how many were removed."""
        _require_root()
        with self._locked():
            return net.delete_tagged(self.names.partition_tag)

    def down(self) -> list[str]:
        """Remove everything the lab made; returns what could not be removed (empty if clean)."""
        _require_root()
        if not self.state_dir.exists() and not self._kernel_objects():
            return []
        with self._locked():
            cg = cgroups.v2_root() / self.names.cgroup
            cgroups.kill(cg)
            for ns in self._our_netns():
                net.delete_netns(ns)
            for dev in self._our_links():
                net.delete_link(dev)
            net.delete_link(self.names.bridge)
            net.delete_tagged(self.names.partition_tag)
            net.delete_tagged(self.names.rule_tag)
            leftovers = [f"mount {d}" for d in self._unmount_disks()]
            leftovers += [str(p) for p in cgroups.remove_everywhere(self.names.cgroup)]
            if self.inventory_path.exists() and f"({self.name})" in self.inventory_path.read_text()[:200]:
                self.inventory_path.unlink()
            self._remove_state()
        return leftovers + self._kernel_objects()

    def _remove_state(self) -> None:
        # overlay work dirs hold root-only 000 dirs; rmtree copes as root
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def _our_netns(self) -> list[str]:
        pat = re.compile(re.escape(self.names.netns_prefix) + r"h[1-9][0-9]*")
        return [ns for ns in net.netns_list(self.names.netns_prefix) if pat.fullmatch(ns)]

    def _our_links(self) -> list[str]:
        pat = re.compile(re.escape(f"skpy{self.names.short}") + r"h[1-9][0-9]*")
        return [d for d in os.listdir("/sys/class/net") if pat.fullmatch(d)]

    def _kernel_objects(self) -> list[str]:
        """Everything of this lab the kernel still holds: what `down` must leave at zero."""
        left = [f"netns {ns}" for ns in self._our_netns()]
        left += [f"link {d}" for d in self._our_links()]
        if net.link_exists(self.names.bridge):
            left.append(f"bridge {self.names.bridge}")
        left += [f"iptables {' '.join(r)}" for tag in (self.names.rule_tag, self.names.partition_tag)
                 for r in net.tagged_rules(tag)]
        left += [f"cgroup {root / self.names.cgroup}" for root in cgroups.all_hierarchies()
                 if (root / self.names.cgroup).exists()]
        left += [f"mount {m}" for m in _mounts_under(self.state_dir)]
        return left

    # --- access ---------------------------------------------------------------------------------

    def connection(self, host: str, timeout: float = 5.0):
        """A fabric Connection to the host that checks its key against the lab's known_hosts."""
        return ssh.connection(self.address(host), self.key, self.known_hosts, timeout)

    def ssh(self, host: str, cmd: str, timeout: float = 5.0, hide: bool = True) -> tuple[int, str, str]:
        return ssh.run(self.address(host), self.key, self.known_hosts, cmd, timeout, hide)

    def nsenter(self, host: str, *argv: str, **kw) -> subprocess.CompletedProcess:
        """Run a command inside the host's namespaces without SSH (for the lab's own checks)."""
        pid = self.init_pid(host)
        if pid is None:
            raise LabError(f"{host} is not running")
        return subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "-i", "--", *argv],
                              capture_output=True, text=True, **kw)
