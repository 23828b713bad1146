#!/usr/bin/env bash
# Runs every test: unit tests and the integration tests on real redis-server +
# redis-sentinel processes and the moto EC2 emulator. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# Integration tests start several processes each: two at a time suit a 2-core box.
cargo test --locked --no-fail-fast -- --test-threads "${TEST_THREADS:-2}"
