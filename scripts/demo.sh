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
BIN=target/debug/sentinel-vip

WORK=$(mktemp -d /tmp/sentinel-vip-demo.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (echo >"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1:$2" >&2; exit 1; }

MOTO=$(free_port); RP=$(free_port); SP=$(free_port); HOOK=$(free_port)
moto_server -H 127.0.0.1 -p "$MOTO" >"$WORK/moto.log" 2>&1 & PIDS+=($!)
$PY scripts/rig.py sink "$HOOK" "$WORK/webhooks.jsonl" & PIDS+=($!)
HOSTS=(127.0.0.2 127.0.0.3 127.0.0.4)
for i in 0 1 2; do
  h=${HOSTS[$i]}; mkdir -p "$WORK/r$i"
  extra=(); [ "$i" -gt 0 ] && extra=(--replicaof 127.0.0.2 "$RP")
  redis-server --bind "$h" --port "$RP" --save "" --appendonly no --protected-mode no \
    --replica-announce-ip "$h" --dir "$WORK/r$i" --logfile redis.log "${extra[@]}" & PIDS+=($!)
done
for h in "${HOSTS[@]}"; do wait_port "$h" "$RP"; done
for i in 0 1 2; do
  h=${HOSTS[$i]}
  cat >"$WORK/sentinel-$i.conf" <<CONF
bind $h
port $SP
protected-mode no
dir $WORK
logfile sentinel-$i.log
sentinel announce-ip $h
sentinel monitor mymaster 127.0.0.2 $RP 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 4000
CONF
  redis-server "$WORK/sentinel-$i.conf" --sentinel & PIDS+=($!)
done
for h in "${HOSTS[@]}"; do wait_port "$h" "$SP"; done
wait_port 127.0.0.1 "$MOTO"

EC2=$($PY scripts/rig.py setup "http://127.0.0.1:$MOTO" 2 3)
TABLES=($($PY -c 'import json,sys; print(" ".join(json.load(sys.stdin)["tables"]))' <<<"$EC2"))
ENIS=($($PY -c 'import json,sys; print(" ".join(json.load(sys.stdin)["enis"]))' <<<"$EC2"))
cat >"$WORK/config.yaml" <<CONF
sentinels: ["127.0.0.2:$SP", "127.0.0.3:$SP", "127.0.0.4:$SP"]
aws:
  region: us-east-1
  endpoint_url: http://127.0.0.1:$MOTO
masters:
  mymaster:
    vip: 172.16.0.10/32
    route_tables: [${TABLES[0]}, ${TABLES[1]}]
    nodes:
      "127.0.0.2:$RP": { network_interface_id: ${ENIS[0]} }
      "127.0.0.3:$RP": { network_interface_id: ${ENIS[1]} }
      "127.0.0.4:$RP": { network_interface_id: ${ENIS[2]} }
reconcile:
  interval: 30s
alerts:
  group_wait: 2s
  webhooks:
    - { name: demo-sink, kind: generic, url: "http://127.0.0.1:$HOOK/generic" }
    - { name: demo-slack, kind: slack, url: "http://127.0.0.1:$HOOK/slack" }
CONF
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
echo; echo "== sentinel-vip check"
$BIN check --config "$WORK/config.yaml" || true
$BIN run --config "$WORK/config.yaml" 2>"$WORK/daemon.log" & PIDS+=($!)
$PY scripts/rig.py wait "http://127.0.0.1:$MOTO" "${ENIS[0]}" 20 "${TABLES[@]}"
echo; echo "== route before the failover (master 127.0.0.2, ${ENIS[0]})"
$PY scripts/rig.py show "http://127.0.0.1:$MOTO" "${TABLES[@]}"

# Let the sentinels discover the replicas and each other before asking for a failover.
for _ in $(seq 1 300); do
  n=$(redis-cli -h 127.0.0.2 -p "$SP" SENTINEL MASTER mymaster | awk 'f{print;exit} /^num-other-sentinels$/{f=1}')
  [ "${n:-0}" -ge 2 ] && break; sleep 0.1
done
echo; echo "== SENTINEL FAILOVER mymaster"
until [ "$(redis-cli -h 127.0.0.2 -p "$SP" SENTINEL FAILOVER mymaster)" = OK ]; do sleep 0.2; done
for _ in $(seq 1 300); do
  NEW=$(redis-cli -h 127.0.0.2 -p "$SP" SENTINEL GET-MASTER-ADDR-BY-NAME mymaster | head -1)
  [ "$NEW" != 127.0.0.2 ] && break; sleep 0.1
done
idx=$(( ${NEW##*.} - 2 ))
$PY scripts/rig.py wait "http://127.0.0.1:$MOTO" "${ENIS[$idx]}" 20 "${TABLES[@]}"
echo "new master: $NEW (${ENIS[$idx]})"
echo; echo "== route after the failover"
$PY scripts/rig.py show "http://127.0.0.1:$MOTO" "${TABLES[@]}"
echo; echo "== what sentinel-vip logged"
grep -E '\+switch-master: moving|route updated' "$WORK/daemon.log" | sed -E 's/\x1b\[[0-9;]*m//g' | cut -c1-330
echo; echo "== alerts (waiting for group_wait)"
for _ in $(seq 1 100); do [ -s "$WORK/webhooks.jsonl" ] && [ "$(wc -l <"$WORK/webhooks.jsonl")" -ge 2 ] && break; sleep 0.1; done
sleep 0.5
[ -s "$WORK/webhooks.jsonl" ] || echo "(no alert received)"
echo; echo "demo: done; cleaning up"
