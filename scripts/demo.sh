#!/usr/bin/env bash
# Runs the demo: a Mongrel2 on 127.0.0.1:$PORT (default 6767) that routes
# '/' to m2fleet's built-in test app over tcp://127.0.0.1:$SEND_PORT (9999,
# requests) and tcp://127.0.0.1:$RECV_PORT (9998, replies). Mongrel2's
# files live in .run/demo (its chroot). Ctrl-C stops both processes this
# script started, by their pids. Needs `bash scripts/setup.sh` first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

PORT=${PORT:-6767}
SEND_PORT=${SEND_PORT:-9999}
RECV_PORT=${RECV_PORT:-9998}
demo=.run/demo
uuid=m2fleet-demo
ident=m2fleet-demo
send_spec=tcp://127.0.0.1:$SEND_PORT
recv_spec=tcp://127.0.0.1:$RECV_PORT

say() { printf 'demo: %s\n' "$*"; }
# m2sh and mongrel2 log an error when no login name can be found.
export LOGNAME=${LOGNAME:-m2fleet}

[[ -x /usr/bin/mongrel2 && -x /usr/bin/m2sh ]] || { say "Mongrel2 is missing; run: bash scripts/setup.sh"; exit 1; }
[[ -f dist/node/cli.js ]] || { say "dist/node/cli.js is missing; run: bash scripts/setup.sh"; exit 1; }
mkdir -p "$demo"/run "$demo"/logs "$demo"/tmp

# A Mongrel2 left by an earlier demo is not ours to kill: ask the user.
pid_file=$demo/run/mongrel2.pid
if [[ -f $pid_file ]]; then
  old=$(cat "$pid_file")
  if [[ $old =~ ^[0-9]+$ ]] && kill -0 "$old" 2>/dev/null; then
    say "a Mongrel2 (pid $old) still runs from $demo; stop it first: kill $old"
    exit 1
  fi
  rm -f "$pid_file"
fi

# 1. Config (same writer as the test harness), loaded with m2sh.
node scripts/mongrel2-conf.mjs --port "$PORT" --uuid "$uuid" \
  --route "/=json,$send_spec,$recv_spec,$ident" \
  --setting server.daemonize=0 --setting zeromq.threads=1 \
  --setting download.flow_control=1 \
  --setting upload.temp_store=/tmp/upload.XXXXXX \
  > "$demo/m2.conf"
rm -f "$demo/config.sqlite"
(cd "$demo" && m2sh load -config m2.conf -db config.sqlite >/dev/null)
say "config $demo/m2.conf loaded"

m2_pid=
fleet_pid=
# Stops what this script started, by pid: m2fleet first, then Mongrel2.
stop_pid() {
  local pid=$1 name=$2
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  say "$name (pid $pid) ignored SIGTERM for 5 s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  trap - EXIT INT TERM
  stop_pid "$fleet_pid" m2fleet
  stop_pid "$m2_pid" mongrel2
  say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 2. Mongrel2 in the background (daemonize=0, so $! is its pid).
(cd "$demo" && exec /usr/bin/mongrel2 config.sqlite "$uuid" \
  >>logs/stdio.log 2>&1) &
m2_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$m2_pid" 2>/dev/null || { say "mongrel2 exited; see $demo/logs/error.log"; tail -n 20 "$demo/logs/error.log" || true; exit 1; }
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || { say "mongrel2 is not listening on 127.0.0.1:$PORT after 10 s"; exit 1; }
say "mongrel2 (pid $m2_pid) listening on 127.0.0.1:$PORT"

# 3. m2fleet with the built-in test app; wait so a signal reaches the trap.
# In its own session: Ctrl-C reaches only this script, whose trap then
# sends m2fleet one SIGTERM (a second signal would skip the drain).
setsid node "$root/dist/node/cli.js" --zeromq "$send_spec,$recv_spec" --mongrel2-chroot "$demo" &
fleet_pid=$!
say "Open http://127.0.0.1:$PORT/"
set +e
wait "$fleet_pid"
status=$?
set -e
fleet_pid=
exit "$status"
