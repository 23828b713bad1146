#!/usr/bin/env bash
# The failover drill of docs/operations.md on the local rig (redis master + 2
# replicas + 3 sentinels on 127.0.0.2-4, moto as EC2 with 2 route tables, a
# webhook sink, the daemon): check -> reconcile --dry-run -> test-alert ->
# switchover -> switchover --json -> history -> history --json. Prints each
# verb's output and exit status; cleans up. Needs a built debug binary.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
PY=.venv/bin/python
BIN=${CARGO_TARGET_DIR:-target}/debug/sentinel-vip
WORK=$(mktemp -d /tmp/sentinel-vip-drill.XXXXXX)
mkdir -p "$WORK/state"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
HOOK=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$PY scripts/rig.py sink "$HOOK" "$WORK/webhooks.jsonl" >"$WORK/sink.log" 2>&1 & PIDS+=($!)
$PY scripts/rig.py up "$WORK" --tables 2 --config-extra "state_dir: $WORK/state
alerts:
  group_wait: 1s
  webhooks:
    - { name: ops-generic, kind: generic, url: \"http://127.0.0.1:$HOOK/hook\" }
" >"$WORK/rig.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 240); do [ -f "$WORK/rig.env" ] && break; sleep 0.5; done
# shellcheck disable=SC1091
. "$WORK/rig.env"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing NO_COLOR=1
"$BIN" run --config "$CONFIG" >"$WORK/daemon.log" 2>&1 & PIDS+=($!)
$PY scripts/rig.py wait "$MOTO_URL" "${ENIS%% *}" 30 $TABLES >/dev/null
verb() { echo "\$ sentinel-vip $*"; "$BIN" "$@" --config "$CONFIG"; echo "[exit $?]"; }
# Until sentinel 0 reports `n` replicas online with their link up.
replicas_ready() {
  $PY - "$SENTINEL_PORT" "$1" <<'PY'
import sys, time
sys.path.insert(0, "scripts")
import rig
s = rig.sentinel_clients(int(sys.argv[1]))[0]
deadline = time.time() + 30
while time.time() < deadline:
    rs = s.execute_command("SENTINEL", "REPLICAS", "mymaster")
    ok = [r for r in rs if r.get("flags") == "slave" and r.get("master-link-status") == "ok"]
    if len(ok) >= int(sys.argv[2]):
        break
    time.sleep(0.2)
PY
}
verb check
verb reconcile --dry-run
verb test-alert
replicas_ready 2
verb switchover
replicas_ready 2
verb switchover --json
sleep 1 # the journal line follows the daemon's read-back
verb history
verb history --json --limit 1
