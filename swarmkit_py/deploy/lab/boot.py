"""How a lab host boots: the PID 1 script, its sshd config, and the launch into its cgroup.

The init runs as PID 1 of a fresh PID + mount + UTS namespace inside the host's network
namespace. The agent's paths (/etc, /opt, /var/lib, /var/log) are overlays whose upper dirs
live in the host's state dir, so they are private to the host and survive its reboot while
the machine's own files are never written. /run is a fresh tmpfs at every boot, as on a real
machine, which is why a crashed dockerd comes back with an empty exec-root.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from .. import variables

# Written to <host>/init.sh at every boot so a lab created by an older version boots with the
# current script. $1 is the host's state dir; boot.env holds the per-host values.
INIT_SH = r"""#!/bin/bash
set -eu
H=$1
. "$H/boot.env"
S=$SKPY_LAB_STATE

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

# Fresh /run every boot; sshd's files are copied in so it never reads the lab's state dir.
mount -t tmpfs -o mode=755,nosuid,nodev skpy-run /run
mount -t tmpfs -o mode=1777,nosuid,nodev skpy-shm /dev/shm
mkdir -p /run/sshd /run/lock /run/skpy-ssh
chmod 700 /run/skpy-ssh
cp "$H/sshd_config" "$H/ssh_host_ed25519_key" "$H/ssh_host_ed25519_key.pub" /run/skpy-ssh/
cp "$S/id_ed25519.pub" /run/skpy-ssh/authorized_keys
chmod 600 /run/skpy-ssh/*

# A login user other than root (`lab.up --user deploy`): its own key (root's does not let it
# in, nor its key root), a password, and sudo that asks for it, as on a cloud image whose
# operators are not root. Re-applied at every boot, so the state dir's files are the truth.
U=$SKPY_LOGIN_USER
if [ "$U" != root ]; then
  id -u "$U" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --user-group "$U"
  printf '%s:%s\n' "$U" "$(cat "$S/login_password")" | chpasswd
  install -d -m 700 -o "$U" -g "$U" "/home/$U/.ssh"
  install -m 600 -o "$U" -g "$U" "$S/login_ed25519.pub" "/home/$U/.ssh/authorized_keys"
  printf '%s ALL=(ALL:ALL) ALL\n' "$U" > /etc/sudoers.d/skpy-login
  chmod 440 /etc/sudoers.d/skpy-login
fi

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
  # Networking on, as on a real host: the engine's iptables rules, its docker0 bridge and
  # the overlays' bridges all live in this host's own network namespace.
  setsid -f dockerd -H unix:///var/run/docker.sock --exec-root /run/docker \
    --pidfile /run/docker.pid --cgroup-parent="$SKPY_CGROUP_PARENT" \
    >>/var/log/dockerd.log 2>&1 </dev/null
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
                     cgroup_parent: str, login_user: str = "root") -> None:
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
        # the agent role's defaults: where it installs the supervisor and where that logs
        "SKPY_AUTOSTART": str(defaults["swarmkit_supervisor"]),
        "SKPY_AUTOSTART_LOGS": str(defaults["swarmkit_log_dir"]),
    }
    (hdir / "boot.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    init = hdir / "init.sh"
    init.write_text(INIT_SH)
    init.chmod(0o755)


def launch(hdir: Path, netns: str, cgroup: Path) -> None:
    """Start the host detached from us: its first process joins the host's cgroup before it
    enters the namespaces, so everything the host ever starts is inside that cgroup."""
    inner = " ".join(shlex.quote(a) for a in [
        "nsenter", f"--net=/run/netns/{netns}", "--",
        "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--propagation", "private",
        str(hdir / "init.sh"), str(hdir),
    ])
    script = f"echo $$ > {shlex.quote(str(cgroup / 'cgroup.procs'))} && exec {inner}"
    console = hdir / "console.log"
    with open(console, "ab") as log:
        subprocess.run(
            ["setsid", "-f", "env", "-i", f"PATH={CLEAN_PATH}", "HOME=/root", "LANG=C.UTF-8",
             "/bin/sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True,
        )
