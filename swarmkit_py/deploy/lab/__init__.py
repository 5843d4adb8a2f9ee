"""The local lab: N SSH hosts on one Linux box that a deployment cannot tell from VMs.

Each host is a network namespace (own address on a private bridge, no default route), a
PID + mount + UTS namespace whose PID 1 is `tini -> sshd`, its own dockerd (optional), overlay
views of /etc, /opt, /var/lib and /var/log that persist across the host's reboots, and a
cgroup v2 directory that makes a crash a real power cut. Notes on why it is built this way:
`../shared/notes/lab.md`.

Boot hook for the agent role: there is no systemd in a lab host, so at every boot (the first
one after `up`, and each `restart` after a `crash`) the host's init runs
the agent role's `swarmkit_supervisor` (default `/etc/swarmkit-py/autostart`) if it exists in
the host's view -- executed directly if it is executable, else with /bin/sh -- detached
(setsid, stdin from /dev/null), from `/`, with output appended to `autostart.log` in the
role's `swarmkit_log_dir`. It runs before sshd accepts
connections and in parallel with dockerd starting, so a supervisor installed there must wait
for `/var/run/docker.sock` itself. /etc is per-host and persistent, so installing the file
once is enough.

Two ways to boot (`up(init=...)`, `invoke lab.up --init`): `tini` (above) or `systemd`, where
PID 1 is systemd as on a cloud image (its own cgroup namespace, the root an overlay on tmpfs,
the same persistent per-host dirs, docker.service and ssh.service written by the lab, the
machine's own units masked; recipe in ../shared/notes/systemd-lab/), so the agent role
installs a systemd unit instead of its supervisor. `up(user="deploy")` gives the inventory a
login user with its own key and sudo that asks for a password (kept in the state dir; the
inventory reads it with `lookup('file', ...)`), as on hosts where operators are not root.

Fault model: `crash` puts the host's veth down, then `cgroup.kill`s it (sshd, dockerd,
containerd, shims, task containers, agent: all at once); `restart` boots it on the same
state; `partition` drops forwarded traffic between groups on the bridge (the controller keeps
reaching every host); `heal` removes those rules; `down` removes every trace.

Python API: `Lab(name, state_dir=None, subnet=None)` with `up(n)`, `down()`, `crash(h)`,
`restart(h)`, `partition(*hs)`, `heal()`, `hosts()`, `connection(h)`, `ssh(h, cmd)`.
"""

from .lab import Host, Lab, LabError

__all__ = ["Host", "Lab", "LabError"]
