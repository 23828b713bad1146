#!/usr/bin/env bash
# Installs what the demo and the tests need, idempotently:
#   apt: redis-server redis-tools python3-venv prometheus (for promtool);
#   a venv .venv with moto[server], awscli, redis, and the receivers' own validators
#   standardwebhooks (signatures) and jsonschema (Adaptive Card, Alertmanager v4).
# Needs a Rust toolchain (cargo) already: https://rustup.rs
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v promtool >/dev/null || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt)"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The packaged redis services are not used (the rig starts its own processes on 127.0.0.x).
# Nor is the packaged prometheus server (only its promtool is).
for svc in redis-server prometheus; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    sudo_ systemctl stop "$svc" || true
  fi
done
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
