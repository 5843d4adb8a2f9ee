"""How a lab host boots: the PID 1 script, its sshd config, and the launch into its cgroup.

The init runs as PID 1 of a fresh PID + mount + UTS namespace inside the host's network
namespace. The agent's paths (/etc, /opt, /var/lib, /var/log) are overlays whose upper dirs
live in the host's state dir, so they are private to the host and survive its reboot while
the machine's own files are never written. /run is a fresh tmpfs at every boot, as on a real
machine, which is why a crashed dockerd comes back with an empty exec-root.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from .. import variables

# A login user other than root (`lab.up --user deploy`): its own key (root's does not let it
# in, nor its key root), a password, and sudo that asks for it, as on a cloud image whose
# operators are not root. Re-applied at every boot, so the state dir's files are the truth.
# $1: where login_password and login_ed25519.pub are.
LOGIN_SH = r"""
login_user() {
  local U=$SKPY_LOGIN_USER
  [ "$U" != root ] || return 0
  id -u "$U" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --user-group "$U"
  printf '%s:%s\n' "$U" "$(cat "$1/login_password")" | chpasswd
  install -d -m 700 -o "$U" -g "$U" "/home/$U/.ssh"
  install -m 600 -o "$U" -g "$U" "$1/login_ed25519.pub" "/home/$U/.ssh/authorized_keys"
  printf '%s ALL=(ALL:ALL) ALL\n' "$U" > /etc/sudoers.d/skpy-login
  chmod 440 /etc/sudoers.d/skpy-login
}
"""

# The Docker engine of a lab host (both inits). Networking on, as on a real host: the engine's
# iptables rules, its docker0 bridge and the overlays' bridges all live in this host's own
# network namespace.
DOCKERD = "/usr/sbin/dockerd -H unix:///var/run/docker.sock --exec-root /run/docker --pidfile /run/docker.pid"

# Written to <host>/init.sh at every boot so a lab created by an older version boots with the
# current script. $1 is the host's state dir; boot.env holds the per-host values.
INIT_SH = r"""#!/bin/bash
set -eu
H=$1
. "$H/boot.env"
S=$SKPY_LAB_STATE
""" + LOGIN_SH + r"""

hostname "$SKPY_HOSTNAME"

# sysfs of this network namespace (so /sys/class/net shows eth0 and lo), keeping the cgroup
# mounts the engine needs.
mkdir -p "$H/.sysfs-cg"
if mount --rbind /sys/fs/cgroup "$H/.sysfs-cg" 2>/dev/null; then
  if mount -t sysfs sysfs /sys; then
    mount --move "$H/.sysfs-cg" /sys/fs/cgroup
  else
    umount -l "$H/.sysfs-cg"
  fi
fi

for d in etc opt var/lib var/log home; do
  mkdir -p "$H/upper/$d" "$H/work/$d"
  mount -t overlay "skpy-$d" -o "lowerdir=/$d,upperdir=$H/upper/$d,workdir=$H/work/$d" "/$d"
done
echo "$SKPY_HOSTNAME" > /etc/hostname
cp "$S/etc-hosts" /etc/hosts
# A small disk (`Lab.set_disk`): a size-limited filesystem the lab mounted on the machine side,
# so it outlives the host's crashes, bound over the agent's state dir.
if [ -n "$SKPY_DISK_PATH" ] && mountpoint -q "$H/disk"; then
  mkdir -p "$SKPY_DISK_PATH"
  mount --bind "$H/disk" "$SKPY_DISK_PATH"
fi

# Fresh /run every boot; sshd's files are copied in so it never reads the lab's state dir.
mount -t tmpfs -o mode=755,nosuid,nodev skpy-run /run
mount -t tmpfs -o mode=1777,nosuid,nodev skpy-shm /dev/shm
mkdir -p /run/sshd /run/lock /run/skpy-ssh
chmod 700 /run/skpy-ssh
cp "$H/sshd_config" "$H/ssh_host_ed25519_key" "$H/ssh_host_ed25519_key.pub" /run/skpy-ssh/
cp "$S/id_ed25519.pub" /run/skpy-ssh/authorized_keys
chmod 600 /run/skpy-ssh/*

login_user "$S"

if [ "$SKPY_DOCKER" = 1 ]; then
  mkdir -p "$H/docker" /var/lib/docker
  mount --bind "$H/docker" /var/lib/docker
fi
if [ ! -e "$H/root/.skpy-seeded" ]; then
  mkdir -p "$H/root"; cp -a /etc/skel/. "$H/root/"; touch "$H/root/.skpy-seeded"
fi
chmod 700 "$H/root"
mount --bind "$H/root" /root
rm -rf "$H/tmp"; mkdir -p "$H/tmp"; chmod 1777 "$H/tmp"
mount --bind "$H/tmp" /tmp
# The lab's state (operator key, other hosts' disks) is none of the host's business. If it
# lives under /tmp or /root it is already out of view.
if [ -d "$S" ]; then mount -t tmpfs -o size=16k,mode=700 skpy-hidden "$S"; fi

if [ "$SKPY_DOCKER" = 1 ]; then
  setsid -f $SKPY_DOCKERD --cgroup-parent="$SKPY_CGROUP_PARENT" >>/var/log/dockerd.log 2>&1 </dev/null
fi

# The hook the agent role installs its supervisor in (there is no systemd here).
A=$SKPY_AUTOSTART
if [ -e "$A" ]; then
  mkdir -p "$SKPY_AUTOSTART_LOGS"
  if [ -x "$A" ]; then a=("$A"); else a=(/bin/sh "$A"); fi
  (cd / && exec setsid -f "${a[@]}" >>"$SKPY_AUTOSTART_LOGS/autostart.log" 2>&1 </dev/null)
fi

cd /
exec tini -s -- /usr/sbin/sshd -D -e -f /run/skpy-ssh/sshd_config
"""

# `lab.up --init systemd`: the host boots the way a cloud image does, systemd as PID 1 (the
# recipe in ../shared/notes/systemd-lab/). Stage 1 runs as PID 1 of the new PID namespace:
# it moves into the host's leaf cgroup and makes that its cgroup namespace's root. Stage 2
# builds the root: an overlay of / whose upper is a tmpfs (nothing the host writes reaches
# the machine's disk), the persistent per-host overlays on /etc, /opt, /var/lib, /var/log and
# /home as on the tini host, fresh proc/sys/cgroup2/dev/run/tmp, the units the lab needs
# (docker.service and ssh.service with the lab's settings) and masks for every unit of the
# machine's own that would act on the machine (its enabled units, udev, getty, timers...);
# then pivot_root and exec systemd.
INIT_SYSTEMD_SH = r"""#!/bin/bash
set -eu
H=$1
. "$H/boot.env"
S=$SKPY_LAB_STATE
if [ "${2:-}" != stage2 ]; then
  echo $$ > "$SKPY_CGROUP_LEAF/cgroup.procs"
  exec unshare --cgroup "$0" "$H" stage2
fi
""" + LOGIN_SH + r"""
R=$H/rootfs
mount --make-rprivate /
# The engine turns forwarding on in its network namespace; the host's /proc/sys is read-only
# under systemd, so the init does it (this netns only) while it still can.
echo 1 > /proc/sys/net/ipv4/ip_forward
mkdir -p "$H/rw" "$R"
mount -t tmpfs -o mode=755,size=512m skpy-rw "$H/rw"
mkdir -p "$H/rw/upper" "$H/rw/work"
mount -t overlay skpy-root -o "lowerdir=/,upperdir=$H/rw/upper,workdir=$H/rw/work" "$R"
for d in etc opt var/lib var/log home; do
  mkdir -p "$H/upper/$d" "$H/work/$d"
  mount -t overlay "skpy-$d" -o "lowerdir=/$d,upperdir=$H/upper/$d,workdir=$H/work/$d" "$R/$d"
done
if [ ! -e "$H/root/.skpy-seeded" ]; then
  mkdir -p "$H/root"; cp -a /etc/skel/. "$H/root/"; touch "$H/root/.skpy-seeded"
fi
chmod 700 "$H/root"
mount --bind "$H/root" "$R/root"
if [ "$SKPY_DOCKER" = 1 ]; then
  mkdir -p "$H/docker" "$R/var/lib/docker"
  mount --bind "$H/docker" "$R/var/lib/docker"
fi
if [ -n "$SKPY_DISK_PATH" ] && mountpoint -q "$H/disk"; then
  mkdir -p "$R$SKPY_DISK_PATH"
  mount --bind "$H/disk" "$R$SKPY_DISK_PATH"
fi

E=$R/etc
echo "$SKPY_HOSTNAME" > "$E/hostname"
cp "$S/etc-hosts" "$E/hosts"
[ -s "$H/machine-id" ] || systemd-id128 new > "$H/machine-id"
cp "$H/machine-id" "$E/machine-id"
U=$E/systemd/system
mkdir -p "$U/multi-user.target.wants"
for w in /etc/systemd/system/*.wants/*; do
  [ -e "$w" ] || [ -L "$w" ] || continue
  ln -sfn /dev/null "$U/$(basename "$w")"
done
for u in docker.socket containerd.service ssh.socket getty@tty1.service console-getty.service \
         systemd-timesyncd.service systemd-udevd.service systemd-udev-trigger.service \
         systemd-udev-settle.service systemd-modules-load.service systemd-sysctl.service \
         systemd-binfmt.service proc-sys-fs-binfmt_misc.automount systemd-pstore.service \
         systemd-firstboot.service systemd-repart.service kmod-static-nodes.service \
         networking.service systemd-networkd.service systemd-resolved.service \
         apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
         e2scrub_reap.service fstrim.timer man-db.timer remote-fs.target; do
  ln -sfn /dev/null "$U/$u"
done
rm -f "$U/ssh.service" "$U/docker.service"  # masked above as units the machine enables
cp "$H/units/ssh.service" "$U/ssh.service"
ln -sfn /etc/systemd/system/ssh.service "$U/sshd.service"
ln -sfn /etc/systemd/system/ssh.service "$U/multi-user.target.wants/ssh.service"
if [ "$SKPY_DOCKER" = 1 ]; then
  cp "$H/units/docker.service" "$U/docker.service"
  ln -sfn /etc/systemd/system/docker.service "$U/multi-user.target.wants/docker.service"
else
  ln -sfn /dev/null "$U/docker.service"
fi

mount -t proc proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro "$R/proc/sys"
if [ -e "$R/proc/sysrq-trigger" ]; then
  mount --bind "$R/proc/sysrq-trigger" "$R/proc/sysrq-trigger"
  mount -o remount,bind,ro "$R/proc/sysrq-trigger"
fi
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"
D=$R/dev
mount -t tmpfs -o mode=755,nosuid,size=4m skpy-dev "$D"
mknod -m 666 "$D/null" c 1 3; mknod -m 666 "$D/zero" c 1 5; mknod -m 666 "$D/full" c 1 7
mknod -m 666 "$D/random" c 1 8; mknod -m 666 "$D/urandom" c 1 9; mknod -m 666 "$D/tty" c 5 0
mkdir "$D/pts" "$D/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$D/pts"
ln -s pts/ptmx "$D/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$D/shm"
ln -s /proc/self/fd "$D/fd"; ln -s /proc/self/fd/0 "$D/stdin"
ln -s /proc/self/fd/1 "$D/stdout"; ln -s /proc/self/fd/2 "$D/stderr"
touch "$D/console"
if C=$(tty); then mount --bind "$C" "$D/console"; else mount --bind "$D/null" "$D/console"; fi
mount -t tmpfs -o mode=755,nosuid,nodev,size=64m skpy-run "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=256m skpy-tmp "$R/tmp"
mkdir -p "$R/run/skpy-ssh" "$R/run/skpy-login"
chmod 700 "$R/run/skpy-ssh" "$R/run/skpy-login"
cp "$H/sshd_config" "$H/ssh_host_ed25519_key" "$H/ssh_host_ed25519_key.pub" "$R/run/skpy-ssh/"
cp "$S/id_ed25519.pub" "$R/run/skpy-ssh/authorized_keys"
chmod 600 "$R/run/skpy-ssh"/*
if [ "$SKPY_LOGIN_USER" != root ]; then cp "$S/login_password" "$S/login_ed25519.pub" "$R/run/skpy-login/"; fi
# The lab's state (operator key, other hosts' disks) is none of the host's business.
if [ -d "$R$S" ]; then mount -t tmpfs -o size=16k,mode=700 skpy-hidden "$R$S"; fi

cd "$R"
mkdir -p oldroot
pivot_root . oldroot
cd /
umount -l /oldroot
rmdir /oldroot
hostname "$SKPY_HOSTNAME"
login_user /run/skpy-login
rm -rf /run/skpy-login
exec env -i container=skpy-lab PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  setpriv --bounding-set=-sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm \
  /lib/systemd/systemd --system --unit=multi-user.target
"""

# The units a systemd lab host gets in place of the machine's: sshd with the lab's config
# (its host key and authorized keys in /run, copied by the init), and the host's own engine.
SSH_UNIT = """\
# Written by the swarmkit-py lab: sshd with the lab's per-host config.
[Unit]
Description=OpenBSD Secure Shell server (swarmkit-py lab)
After=network.target

[Service]
ExecStartPre=/usr/bin/mkdir -p /run/sshd
ExecStart=/usr/sbin/sshd -D -e -f /run/skpy-ssh/sshd_config
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

DOCKER_UNIT = """\
# Written by the swarmkit-py lab: this host's own Docker engine.
[Unit]
Description=Docker Application Container Engine (swarmkit-py lab host)
After=network.target

[Service]
Type=notify
ExecStart={dockerd}
ExecReload=/bin/kill -s HUP $MAINPID
TimeoutStartSec=60
Restart=on-failure
Delegate=yes
KillMode=process
LimitNOFILE=infinity

[Install]
WantedBy=multi-user.target
"""

SSHD_CONFIG = """\
# Written by the swarmkit-py lab for {host}.
ListenAddress {addr}:22
HostKey /run/skpy-ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile /run/skpy-ssh/authorized_keys .ssh/authorized_keys
PidFile /run/sshd.pid
MaxStartups 64:30:128
MaxSessions 64
UseDNS no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
"""

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def write_host_files(hdir: Path, state: Path, host: str, addr: str, docker: bool,
                     cgroup_parent: str, login_user: str = "root", init: str = "tini",
                     cgroup_leaf: Path | None = None, disk_path: str = "") -> None:
    hdir.mkdir(parents=True, exist_ok=True)
    key = hdir / "ssh_host_ed25519_key"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host}", "-f", str(key)],
            check=True, capture_output=True,
        )
    (hdir / "sshd_config").write_text(SSHD_CONFIG.format(host=host, addr=addr))
    defaults = variables.resolve(variables.role_defaults())
    env = {
        "SKPY_HOSTNAME": host,
        "SKPY_DOCKER": "1" if docker else "0",
        "SKPY_CGROUP_PARENT": cgroup_parent,
        "SKPY_LAB_STATE": str(state),
        "SKPY_LOGIN_USER": login_user,
        "SKPY_DOCKERD": DOCKERD,
        "SKPY_CGROUP_LEAF": str(cgroup_leaf or ""),
        "SKPY_DISK_PATH": disk_path,
        # the agent role's defaults: where it installs the supervisor and where that logs
        "SKPY_AUTOSTART": str(defaults["swarmkit_supervisor"]),
        "SKPY_AUTOSTART_LOGS": str(defaults["swarmkit_log_dir"]),
    }
    (hdir / "boot.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    script = hdir / "init.sh"
    script.write_text(INIT_SYSTEMD_SH if init == "systemd" else INIT_SH)
    script.chmod(0o755)
    if init == "systemd":
        (hdir / "units").mkdir(exist_ok=True)
        (hdir / "units" / "ssh.service").write_text(SSH_UNIT)
        (hdir / "units" / "docker.service").write_text(DOCKER_UNIT.format(dockerd=DOCKERD))


def launch(hdir: Path, netns: str, cgroup: Path, init: str = "tini") -> None:
    """Start the host detached from us: its first process joins the host's cgroup before it
    enters the namespaces, so everything the host ever starts is inside that cgroup.
    systemd: the launcher stays in the host's cgroup and PID 1 moves to its leaf `cgroup`
    (stage 1 of the init); `script` gives systemd a real tty as its console, logged to
    console.log (with a plain file it prints nothing)."""
    console = hdir / "console.log"
    if init == "systemd":
        inner = " ".join(shlex.quote(a) for a in [
            "nsenter", f"--net=/run/netns/{netns}", "--",
            "unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--propagation", "private",
            str(hdir / "init.sh"), str(hdir),
        ])
        inner = f"script -aqfec {shlex.quote(inner)} {shlex.quote(str(console))}"
        cgroup = cgroup.parent
    else:
        inner = " ".join(shlex.quote(a) for a in [
            "nsenter", f"--net=/run/netns/{netns}", "--",
            "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--propagation", "private",
            str(hdir / "init.sh"), str(hdir),
        ])
    script = f"echo $$ > {shlex.quote(str(cgroup / 'cgroup.procs'))} && exec {inner}"
    with open(os.devnull if init == "systemd" else console, "ab") as log:  # `script` writes the console
        subprocess.run(
            ["setsid", "-f", "env", "-i", f"PATH={CLEAN_PATH}", "HOME=/root", "LANG=C.UTF-8",
             "/bin/sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True,
        )
