#!/usr/bin/env bash
# Installs what the demo and the tests need, idempotently:
#   apt: redis-server redis-tools python3-venv prometheus (for promtool), and for
#   the package test systemd (systemd-analyze) and curl;
#   a venv .venv with moto[server], awscli, redis, and the receivers' own validators
#   standardwebhooks (signatures) and jsonschema (Adaptive Card, Alertmanager v4).
# Needs root (or sudo) when something is missing from apt. Does not start the
# services of the packages it installs (the rig starts its own redis processes on
# 127.0.0.x and random ports), and never stops or restarts one already running.
# Needs a Rust toolchain (cargo) already: https://rustup.rs
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt)"
  sudo_ apt-get update -qq
  # Their services (redis-server, prometheus) are not started: a policy-rc.d that
  # denies every start (exit 101) while this apt-get runs, only if the host has
  # none of its own, removed as soon as apt-get is done (or setup is stopped).
  # Debian still enables them for the next boot: systemctl disable them if unwanted.
  policy=/usr/sbin/policy-rc.d mark='scripts/setup.sh (sentinel-vip)'
  drop_policy() { if grep -qF "$mark" "$policy" 2>/dev/null; then sudo_ rm -f "$policy"; fi; }
  if [ ! -e "$policy" ]; then
    trap drop_policy EXIT
    printf '#!/bin/sh\n# %s, while it installs packages: start no service\nexit 101\n' "$mark" \
      | sudo_ tee "$policy" >/dev/null
    sudo_ chmod 0755 "$policy"
  fi
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  drop_policy
  trap - EXIT
fi
if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/aws ] || ! .venv/bin/python -c "import redis" 2>/dev/null; then
  echo "setup: creating .venv with moto[server] (pip)"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q 'moto[server]' awscli redis
fi
if ! .venv/bin/python -c "import standardwebhooks, jsonschema" 2>/dev/null; then
  echo "setup: installing standardwebhooks and jsonschema into .venv (pip)"
  .venv/bin/pip install -q standardwebhooks jsonschema
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust first (https://rustup.rs), then run this again" >&2
  exit 1
fi
echo "setup: ok (redis $(redis-server --version | awk '{print $3}'), $(.venv/bin/moto_server --version 2>/dev/null || echo moto), $(cargo --version))"
