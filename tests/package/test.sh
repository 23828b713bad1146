#!/usr/bin/env bash
# The .deb as an admin meets it: build it from the debug binary, dpkg -i it, check
# the installed unit (systemd-analyze verify), the service user and the config's
# owner and mode, then start the INSTALLED binary the way the installed unit says
# (its ExecStart, User=/Group= or DynamicUser=, EnvironmentFile=, StateDirectory=,
# UMask=, NOTIFY_SOCKET) against the rig (scripts/rig.py: redis + 3 sentinels +
# moto) with the rig's config written into /etc/sentinel-vip/config.yaml as an
# admin edits it, until /readyz is 200 and systemd would have got READY=1; run the
# unit's ExecReload= lines on a good and on a broken config; dpkg -i the same
# package again and check the edited conffile is kept; purge. Where systemd is not
# PID 1 (CI) the unit's user is taken with setpriv, as systemd would.
#
# Needs root, dpkg, systemd-analyze, setpriv (scripts/setup.sh installs systemd
# when systemd-analyze is missing) and .venv (moto). Refuses to run where
# sentinel-vip is already installed: it installs and purges the package.
#   tests/package/test.sh             builds with scripts/package.sh --debug
#   DEB=path.deb tests/package/test.sh   tests that package instead
# Ends with "package: N passed, M failed"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
UNIT=/usr/lib/systemd/system/sentinel-vip.service
CONFIG=/etc/sentinel-vip/config.yaml
READY_WITHIN=${READY_WITHIN:-60}

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
no() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
  echo "package: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}

[ "$(id -u)" -eq 0 ] || { echo "package: needs root (dpkg -i, setpriv)" >&2; exit 2; }
for tool in dpkg systemd-analyze setpriv curl; do
  command -v "$tool" >/dev/null || { echo "package: $tool not found (scripts/setup.sh installs it)" >&2; exit 2; }
done
[ -x "$PY" ] || { echo "package: .venv missing: run scripts/setup.sh" >&2; exit 2; }
status=$(dpkg-query -W -f '${Status}' sentinel-vip 2>/dev/null)
if [ -n "$status" ] && [ "${status##* }" != not-installed ]; then
  echo "package: sentinel-vip is on this host ($status); this test installs and purges it, so it refuses" >&2
  exit 2
fi

WORK=$(mktemp -d /tmp/sentinel-vip-pkgtest.XXXXXX)
chmod 0755 "$WORK" # the service user reaches the notify socket in here
PIDS=()
user_existed=$(getent passwd sentinel-vip >/dev/null && echo yes || echo no)
group_existed=$(getent group sentinel-vip >/dev/null && echo yes || echo no)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -z "${env_file:-}" ] || rm -f "$env_file"
  if dpkg-query -W sentinel-vip >/dev/null 2>&1; then
    dpkg --purge sentinel-vip >/dev/null 2>&1 || true
  fi
  rmdir /etc/sentinel-vip 2>/dev/null || true
  # The package keeps its system user on purge (Debian policy); the test leaves
  # the host as it found it.
  [ "$user_existed" = yes ] || userdel sentinel-vip 2>/dev/null || true
  [ "$group_existed" = yes ] || groupdel sentinel-vip 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build and install ---
if [ -z "${DEB:-}" ]; then
  echo "package: building the .deb from the debug binary (scripts/package.sh --debug)"
  DEB=$(scripts/package.sh --debug | sed -n 's/^built \(.*\) (.*)$/\1/p')
  [ -n "$DEB" ] || { no "scripts/package.sh --debug built a .deb"; finish; exit; }
fi
echo "package: testing $DEB ($(du -h "$DEB" | cut -f1))"
if out=$(DEBIAN_FRONTEND=noninteractive dpkg -i "$DEB" </dev/null 2>&1); then
  ok "dpkg -i installs it"
else
  no "dpkg -i installs it:"$'\n'"$out"
  finish; exit
fi
[ -f "$UNIT" ] || UNIT=$(dpkg -L sentinel-vip | grep '/systemd/system/sentinel-vip.service$' | head -n1)

# --- the installed unit, offline ---
if out=$(systemd-analyze verify "$UNIT" 2>&1) && ! grep -q 'sentinel-vip' <<<"$out"; then
  ok "systemd-analyze verify $UNIT: no complaint"
else
  no "systemd-analyze verify $UNIT:"$'\n'"$out"
fi

# The unit's own settings, as systemd reads them (last assignment wins).
unit() { sed -n "s/^$1=//p" "$UNIT" | tail -n1; }
exec_start=$(unit ExecStart)
user=$(unit User) group=$(unit Group)
state_dir=$(unit StateDirectory)
umask_=$(unit UMask)
if [ -n "$user" ]; then
  if getent passwd "$user" >/dev/null && getent group "${group:-$user}" >/dev/null \
     && [ "$(id -u "$user")" -lt 1000 ]; then
    ok "system user $user ($(id -u "$user")) and group ${group:-$user} exist"
  else
    no "the unit's User=$user / Group=${group:-$user} exist as a system user and group"
  fi
  uid=$(id -u "$user") gid=$(getent group "${group:-$user}" | cut -d: -f3)
  groups_=(--init-groups)
else
  no "the unit names a User= the package creates (it has DynamicUser=$(unit DynamicUser))"
  # What systemd would do for DynamicUser=yes: a fresh uid/gid from 61184-65519.
  uid=61184 gid=61184
  groups_=(--clear-groups)
fi
as_unit() { setpriv --reuid "${uid:-65534}" --regid "${gid:-65534}" "${groups_[@]}" -- "$@"; }

# --- the config: owner and mode, readable by the unit's user ---
mode=$(stat -c '%a %U:%G' "$CONFIG" 2>/dev/null)
if [ "$mode" = "640 root:sentinel-vip" ]; then
  ok "$CONFIG is 0640 root:sentinel-vip"
else
  no "$CONFIG is 0640 root:sentinel-vip (it is ${mode:-missing})"
fi

# --- the rig, and the admin's edit of the conffile ---
HTTP=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$PY" scripts/rig.py up "$WORK/rig" --tables 2 --config-extra "http:
  listen: 127.0.0.1:$HTTP
" >"$WORK/rig.log" 2>&1 &
RIG=$!
PIDS+=("$RIG")
mkdir -p "$WORK/rig"
deadline=$((SECONDS + 60))
until [ -s "$WORK/rig/rig.env" ]; do
  if ! kill -0 "$RIG" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
    no "the rig starts:"$'\n'"$(tail -n 20 "$WORK/rig.log")"
    finish; exit
  fi
  sleep 0.2
done
# The rig's config (rig.env names it) into the conffile, edited in place (owner
# and mode stay) as an editor run by root does.
cat "$WORK/rig/config.yaml" >"$CONFIG"
# The secrets the unit's EnvironmentFile= names: moto's credentials, as an admin
# puts AWS keys (or webhook tokens) there, 0600 root:root.
env_file=$(unit EnvironmentFile)
env_file=${env_file#-}
if [ -n "$env_file" ]; then
  install -m 0600 /dev/null "$env_file"
  printf 'AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n' >"$env_file"
fi

# --- start the installed binary as the unit would ---
# systemd's environment for a system service: PATH, LANG, the user's USER/LOGNAME/
# HOME/SHELL, STATE_DIRECTORY, NOTIFY_SOCKET; then EnvironmentFile's lines (systemd
# reads that file as root). Working directory /, the unit's UMask.
svc_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
if [ -n "$user" ]; then
  IFS=: read -r _ _ _ _ _ home shell < <(getent passwd "$user")
  svc_env+=(USER="$user" LOGNAME="$user" HOME="$home" SHELL="$shell")
fi
if [ -n "$state_dir" ]; then
  # StateDirectory=: systemd creates /var/lib/<name> owned by the unit's user.
  install -d -o "$uid" -g "$gid" -m 0755 "/var/lib/$state_dir"
  svc_env+=(STATE_DIRECTORY="/var/lib/$state_dir")
fi
if [ -n "$env_file" ] && [ -r "$env_file" ]; then
  while IFS= read -r line; do
    case "$line" in '' | '#'* | ';'*) continue ;; esac
    svc_env+=("$line")
  done <"$env_file"
fi
# systemd's notify socket, to see READY=1 arrive (Type=notify).
"$PY" -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "a") as f:
    while True:
        f.write(s.recv(4096).decode(errors="replace") + "\n"); f.flush()
' "$WORK/notify" "$WORK/notify.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$WORK/notify" ] && break; sleep 0.05; done
svc_env+=(NOTIFY_SOCKET="$WORK/notify")
# WatchdogSec=: systemd passes WATCHDOG_USEC and expects WATCHDOG=1 within it.
watchdog_usec=""
case "$(unit WatchdogSec)" in
  *[!0-9s]* | "") ;;
  *) watchdog_usec=$(($(unit WatchdogSec | tr -d s) * 1000000)); svc_env+=(WATCHDOG_USEC="$watchdog_usec") ;;
esac

read -r -a argv <<<"$exec_start"
(
  cd / && umask "${umask_:-0022}"
  # systemd names the main pid for the watchdog; env and setpriv exec into the daemon.
  [ -z "$watchdog_usec" ] || svc_env+=(WATCHDOG_PID=$BASHPID)
  exec env -i "${svc_env[@]}" setpriv --reuid "$uid" --regid "$gid" "${groups_[@]}" -- "${argv[@]}"
) >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
PIDS+=("$DAEMON")
ready="" notified=""
deadline=$((SECONDS + READY_WITHIN))
while [ $SECONDS -lt $deadline ] && kill -0 "$DAEMON" 2>/dev/null; do
  if [ -z "$ready" ]; then
    code=$(curl -s -o "$WORK/readyz" -w '%{http_code}' "http://127.0.0.1:$HTTP/readyz" 2>/dev/null)
    [ "$code" != 200 ] || ready=$((READY_WITHIN - deadline + SECONDS))
  fi
  if [ -z "$notified" ] && grep -q '^READY=1' "$WORK/notify.log" 2>/dev/null \
     && { [ -z "$watchdog_usec" ] || grep -q '^WATCHDOG=1' "$WORK/notify.log"; }; then
    notified=$((READY_WITHIN - deadline + SECONDS))
  fi
  [ -z "$ready" ] || [ -z "$notified" ] || break
  sleep 0.2
done
state="still running"
kill -0 "$DAEMON" 2>/dev/null || { wait "$DAEMON"; state="exited $?"; }
log_tail() { sed -E 's/\x1b\[[0-9;]*m//g' "$WORK/daemon.log" | tail -n 15; }
if [ -n "$ready" ]; then
  ok "the installed binary, started as the unit would (uid $uid), serves /readyz 200 after ${ready}s"
else
  no "the installed binary, started as the unit would (uid $uid), serves /readyz 200 within ${READY_WITHIN}s ($state); its log:"$'\n'"$(log_tail)"
fi
if [ -n "$notified" ]; then
  ok "it tells systemd READY=1${watchdog_usec:+ and WATCHDOG=1} (Type=notify, WatchdogSec=) after ${notified}s"
else
  no "it tells systemd READY=1${watchdog_usec:+ and WATCHDOG=1} within ${READY_WITHIN}s ($state); it sent: $(sort -u "$WORK/notify.log" 2>/dev/null | cut -c1-60 | tr '\n' ' ')"
fi

# --- systemctl reload, as the unit's ExecReload= lines run ---
mapfile -t reload < <(sed -n 's/^ExecReload=//p' "$UNIT")
if ! grep -q -- ' check --offline ' <<<"${reload[0]:-}"; then
  no "ExecReload= checks the config (check --offline) before it signals (it has: ${reload[*]})"
elif ! /usr/bin/sentinel-vip check --help 2>/dev/null | grep -q -- '--offline'; then
  no "ExecReload= runs 'check --offline', which this binary does not have: every systemctl reload would fail"
else
  run_reload() { # each ExecReload= line in order, as the unit's user; stops at the first failure
    for line in "${reload[@]}"; do
      read -r -a cmd <<<"${line//\$MAINPID/$DAEMON_PID}"
      (cd / && exec env -i "${svc_env[@]}" setpriv --reuid "$uid" --regid "$gid" "${groups_[@]}" -- "${cmd[@]}") \
        >>"$WORK/reload.log" 2>&1 || return 1
    done
  }
  DAEMON_PID=$DAEMON # env and setpriv exec'd into the daemon
  good=$(cat "$CONFIG")
  reloads() { grep -c 'config reloaded' "$WORK/daemon.log"; }
  before=$(reloads)
  good_ok=0
  if run_reload; then # then the daemon logs the reload it was signalled for
    deadline=$((SECONDS + 10))
    until [ "$(reloads)" -gt "$before" ] || [ $SECONDS -ge $deadline ]; do sleep 0.1; done
    [ "$(reloads)" -gt "$before" ] && kill -0 "$DAEMON" 2>/dev/null && good_ok=1
  fi
  printf 'masters: {}\nnot_a_key: 1\n' >"$CONFIG"
  if ! run_reload && kill -0 "$DAEMON" 2>/dev/null; then bad_ok=1; else bad_ok=0; fi
  printf '%s\n' "$good" >"$CONFIG"
  if [ "$good_ok$bad_ok" = 11 ]; then
    ok "ExecReload= passes a good config to SIGHUP and refuses a broken one before signalling"
  else
    no "ExecReload= passes a good config (ok=$good_ok) and refuses a broken one before signalling (ok=$bad_ok):"$'\n'"$(tail -n 10 "$WORK/reload.log")"
  fi
fi

# --- a broken config at start: an exit status the unit does not restart on ---
good=$(cat "$CONFIG")
printf 'masters: {}\nnot_a_key: 1\n' >"$CONFIG"
(cd / && exec env -i "${svc_env[@]}" timeout 20 setpriv --reuid "$uid" --regid "$gid" "${groups_[@]}" -- "${argv[@]}") \
  >"$WORK/bad-start.log" 2>&1
code=$?
printf '%s\n' "$good" >"$CONFIG"
prevent=$(unit RestartPreventExitStatus)
if [ "$code" = 2 ] && [[ " $prevent " == *" $code "* ]]; then
  ok "a broken config at start exits 2, which RestartPreventExitStatus= keeps from a restart loop"
else
  no "a broken config at start exits 2 (it exited $code) and RestartPreventExitStatus= lists it (it is '${prevent}'):"$'\n'"$(tail -n 3 "$WORK/bad-start.log")"
fi

# --- dpkg -i the same package again: the edited conffile stays ---
edited=$(md5sum <"$CONFIG")
out=$(DEBIAN_FRONTEND=noninteractive dpkg -i "$DEB" </dev/null 2>&1) || out="dpkg -i failed: $out"
why=()
[ "$(md5sum <"$CONFIG")" = "$edited" ] || why+=("its content was replaced")
[ "$(stat -c '%a %U:%G' "$CONFIG")" = "$mode" ] || why+=("owner/mode $mode -> $(stat -c '%a %U:%G' "$CONFIG")")
as_unit cat "$CONFIG" >/dev/null 2>&1 || why+=("uid $uid cannot read it")
if [ ${#why[@]} -eq 0 ] && [ "${out#dpkg -i failed}" = "$out" ]; then
  ok "dpkg -i again (dpkg's default, no --force-conf*) keeps the edited conffile, its owner and mode"
else
  no "dpkg -i again keeps the edited conffile readable by the unit's user: ${why[*]}"$'\n'"$out"
fi

# --- purge ---
kill "$DAEMON" 2>/dev/null
wait "$DAEMON" 2>/dev/null
rm -f "$env_file" # the admin's secrets are theirs; purge leaves them (and the directory)
if out=$(dpkg --purge sentinel-vip 2>&1) && [ ! -e /usr/bin/sentinel-vip ] && [ ! -e "$CONFIG" ] \
   && [ ! -e "/var/lib/sentinel-vip" ]; then
  ok "dpkg --purge removes the binary, the conffile and /var/lib/sentinel-vip"
else
  no "dpkg --purge removes the binary, the conffile and /var/lib/sentinel-vip:"$'\n'"$out"
fi
finish
