#!/usr/bin/env bash
# The whole job on a local rig: redis master + 2 replicas + 3 sentinels on
# 127.0.0.2-4, moto as EC2, a webhook sink, and sentinel-vip; then a failover,
# the route before/after with the time it took, and the alert. Cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
PY=.venv/bin/python
echo "demo: building sentinel-vip (first build takes a few minutes)"
cargo build --quiet --bin sentinel-vip
BIN=${CARGO_TARGET_DIR:-target}/debug/sentinel-vip

WORK=$(mktemp -d /tmp/sentinel-vip-demo.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
HOOK=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$PY scripts/rig.py sink "$HOOK" "$WORK/webhooks.jsonl" & PIDS+=($!)
# The rig (scripts/rig.py, the benchmarks' too): redis + sentinels, moto with
# 2 route tables and an ENI per node, and sentinel-vip's config with our alerts.
$PY scripts/rig.py up "$WORK" --tables 2 --config-extra "alerts:
  group_wait: 2s
  webhooks:
    - { name: demo-sink, kind: generic, url: \"http://127.0.0.1:$HOOK/generic\" }
    - { name: demo-slack, kind: slack, url: \"http://127.0.0.1:$HOOK/slack\" }
" & RIG=$!; PIDS+=($RIG)
until [ -s "$WORK/rig.env" ]; do
  kill -0 "$RIG" 2>/dev/null || { echo "demo: the rig did not start" >&2; exit 1; }
  sleep 0.1
done
. "$WORK/rig.env"   # MOTO_URL REDIS_PORT SENTINEL_PORT HOSTS TABLES ENIS CONFIG
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
echo; echo "== sentinel-vip check"
$BIN check --config "$CONFIG" || true
$BIN run --config "$CONFIG" 2>"$WORK/daemon.log" & PIDS+=($!)
$PY scripts/rig.py wait "$MOTO_URL" "${ENIS[0]}" 20 "${TABLES[@]}"
echo; echo "== route before the failover (master ${HOSTS[0]}, ${ENIS[0]})"
$PY scripts/rig.py show "$MOTO_URL" "${TABLES[@]}"

echo; echo "== SENTINEL FAILOVER mymaster"
# Once the sentinels know the replicas and each other; prints the new master.
NEW=$($PY scripts/rig.py failover "$SENTINEL_PORT")
idx=$(( ${NEW##*.} - 2 ))
$PY scripts/rig.py wait "$MOTO_URL" "${ENIS[$idx]}" 20 "${TABLES[@]}"
echo "new master: $NEW (${ENIS[$idx]})"
echo; echo "== route after the failover"
$PY scripts/rig.py show "$MOTO_URL" "${TABLES[@]}"
echo; echo "== what sentinel-vip logged"
grep -E '\+switch-master: moving|route updated' "$WORK/daemon.log" | sed -E 's/\x1b\[[0-9;]*m//g' | cut -c1-330
echo; echo "== alerts (waiting for group_wait)"
for _ in $(seq 1 100); do [ -s "$WORK/webhooks.jsonl" ] && [ "$(wc -l <"$WORK/webhooks.jsonl")" -ge 2 ] && break; sleep 0.1; done
sleep 0.5
[ -s "$WORK/webhooks.jsonl" ] || echo "(no alert received)"
echo; echo "demo: done; cleaning up"
