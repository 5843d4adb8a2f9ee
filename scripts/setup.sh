#!/usr/bin/env bash
# Installs whatever this checkout needs and is missing: Debian packages, a venv in .venv with
# the project (editable) and its dev/bench extras. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the project uses: the venv, and the lab's parts (sshd, namespaces, iptables,
# tini as each lab host's PID 1, a Docker engine per lab host, busybox for the task image; sudo for
# lab hosts whose login user is not root; chromium and its driver for the dashboard's browser tests).
APT_PKGS=(python3 python3-venv python3-dev gcc openssh-server openssh-client iproute2 iptables tini docker.io busybox-static procps psmisc sudo chromium chromium-driver)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}; run as root or install them" >&2; exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev,bench]'
  rm -f .venv/.installed-*; touch "$stamp"
fi
