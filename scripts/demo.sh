#!/usr/bin/env bash
# The main job, from a fresh Debian machine (as root): a local lab of 7 SSH hosts, the agent
# pushed and a 5-manager swarm formed over SSH (`invoke bootstrap --managers 5`), a demo
# service running on it, and the cluster's status. Idempotent: run it again and nothing changes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
if [ "$(id -u)" != 0 ]; then
  echo "demo: the local lab needs root (network namespaces, cgroups); run as root" >&2
  exit 1
fi
invoke lab.up --hosts 7
invoke bootstrap --managers 5
eval "$(invoke docker-env 2>/dev/null)"
export DOCKER_CONFIG="$PWD/.lab/docker-config"
if ! docker service inspect demo >/dev/null 2>&1; then
  # Published through the routing mesh (ingress, Swarm's default): every host answers on 8080.
  docker service create --name demo --replicas 3 --detach=false --publish 8080:8080 \
    swarmkit-py/busybox:latest sh -c 'mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www' 
fi
invoke status
echo
# Every host's published port answers (the routing mesh), whichever replica serves it.
for addr in $(python -c 'from swarmkit_py.deploy.lab import Lab; print(*(h.address for h in Lab("lab").hosts() if h.state == "running"))'); do
  printf 'curl http://%s:8080/ -> ' "$addr"
  curl -s -m 5 --retry 5 --retry-all-errors --retry-delay 1 "http://$addr:8080/" || echo "no answer"
done
# Each host's mesh sends new connections to the replicas in turn (round robin per host).
printf 'three more requests to %s ->' "$addr"
for _ in 1 2 3; do printf ' %s' "$(curl -s -m 5 "http://$addr:8080/" || echo 'no answer')"; done
echo
echo
echo "The swarm runs on the lab hosts (invoke lab.status). Point your docker CLI at it with:"
echo '  eval "$(.venv/bin/invoke docker-env)"'
echo "Try: invoke lab.crash <leader host>, then invoke status; invoke lab.down removes everything."
