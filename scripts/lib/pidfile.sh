# Sourced by scripts/docker-up.sh (and its test). Bash.
#
# pidfile_owner FILE PROGRAM: prints the pid in FILE if that process is running PROGRAM, else
# prints nothing. A pid alone proves nothing: after a reboot, or on a machine restored from a
# snapshot (CI does that), the pid in a leftover pidfile can belong to any other process, and
# dockerd then refuses to start ("pid file found, ensure docker is not running").
pidfile_owner() {
  local pid comm
  pid=$(tr -dc 0-9 <"$1" 2>/dev/null) || return 0
  [ -n "$pid" ] || return 0
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 0
  [ "$comm" = "$2" ] && echo "$pid"
  return 0
}

# clear_stale_pidfile FILE PROGRAM: removes FILE unless its pid is a running PROGRAM.
clear_stale_pidfile() {
  [ -e "$1" ] || return 0
  [ -n "$(pidfile_owner "$1" "$2")" ] || rm -f "$1"
}
