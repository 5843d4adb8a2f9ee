#!/usr/bin/env bash
# Makes sure this machine's Docker engine answers and holds the local task image
# (swarmkit-py/busybox:latest). Idempotent: with a running engine and the image present it only
# checks. Needs root to start dockerd. Environment: DOCKER_UP_TIMEOUT (seconds, default 30).
#
# Why these dockerd flags (tried on Debian 12, dockerd 20.10, no systemd, cgroup v1 hybrid):
#   dockerd starts here with no flags at all, but its default iptables setup switches the
#   machine's FORWARD policy to DROP and adds DOCKER chains. That edits the firewall of a shared
#   machine and silently cuts the lab's namespace bridge (notes/lab.md, gotcha 1). So:
#   --iptables=false --ip-masq=false  leave the firewall alone. Host-mode published ports still
#                                     work (docker-proxy listens on the host port; verified with
#                                     httpd on 127.0.0.1); containers get no outbound NAT, which
#                                     nothing needs: no registry is reachable anyway.
#   --ip-forward=false                do not flip the net.ipv4.ip_forward sysctl behind our back.
# These are the same flags the lab's per-host engines use, so both behave alike.
# No systemd here: dockerd runs under setsid, detached from the caller, logging to $LOG.
set -euo pipefail
cd "$(dirname "$0")/.."

LOG=/var/log/swarmkit-py-dockerd.log
LOCK=/run/swarmkit-py-docker-up.lock
PIDFILE=/var/run/docker.pid
# dockerd's own containerd: a live pid in here makes dockerd wait on a containerd that is not there.
CONTAINERD_PIDFILE=/var/run/docker/containerd/containerd.pid
TIMEOUT=${DOCKER_UP_TIMEOUT:-30}
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
. scripts/lib/pidfile.sh

engine_up() { docker info >/dev/null 2>&1; }

start_engine() {
  command -v dockerd >/dev/null || { echo "docker-up: dockerd not installed (apt-get install docker.io)" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "docker-up: the engine is down and starting dockerd needs root" >&2; exit 1; }
  local pid deadline=$((SECONDS + TIMEOUT))
  pid=$(pidfile_owner "$PIDFILE" dockerd)
  if [ -n "$pid" ]; then
    # A dockerd is running but not answering yet (starting, or started by someone else): wait
    # for it rather than start a second one, which would refuse anyway.
    echo "docker-up: dockerd (pid $pid) is running; waiting for it to answer"
  else
    # A dockerd killed without cleanup leaves its pidfiles behind, and a new one refuses to
    # start while the pid in them is alive, whatever process now holds that pid.
    clear_stale_pidfile "$PIDFILE" dockerd
    clear_stale_pidfile "$CONTAINERD_PIDFILE" containerd
    echo "docker-up: starting dockerd (log: $LOG)"
    setsid dockerd --iptables=false --ip-masq=false --ip-forward=false \
      >>"$LOG" 2>&1 </dev/null &
    pid=$!
  fi
  until engine_up; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "docker-up: dockerd exited during startup; last lines of $LOG:" >&2
      tail -n 20 "$LOG" >&2; exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "docker-up: dockerd (pid $pid) did not answer 'docker info' within ${TIMEOUT}s; see $LOG" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "docker-up: dockerd is up (pid $pid)"
}

if ! engine_up; then
  # Several test sessions may race to start the one engine; only the lock holder starts it.
  exec 9>"$LOCK"
  flock -w "$TIMEOUT" 9 || { echo "docker-up: could not take $LOCK within ${TIMEOUT}s" >&2; exit 1; }
  engine_up || start_engine
  exec 9>&-
fi

"$PY" -m swarmkit_py.taskimage
