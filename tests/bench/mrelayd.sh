#!/bin/bash
# Benchmark: accept → queue → local Maildir delivery. Postfix's smtp-source pushes the same load
# (default -s 20 -m 5000 -l 4096) into mrelayd (release build) and into the peers' Postfix
# (smtpd → cleanup → qmgr → virtual(8) into a Maildir). A run ends when the last message is in
# the Maildir, so both include delivery. Prints messages per second, peak memory and the ratio.
# Not a test: numbers only.
#
#   usage: tests/bench/mrelayd.sh [MESSAGES] [SESSIONS] [SIZE]
#   env:   MAILKIT_PEERS_ENV  a running peers instance (else one is started on PORT_BASE=37000)
#
# Durability: both fsync. mrelayd fsyncs the queue file and msg/ before 250, the Maildir file
# and new/ before removing the queue entry (and msg/ after). Postfix fsyncs the queue file
# before 250 and virtual(8) fsyncs the Maildir file.
# Memory: mrelayd's VmHWM; for Postfix the peak of the summed RSS of its processes (sampled).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
M=${1:-5000}
S=${2:-20}
L=${3:-4096}
SRC=/usr/sbin/smtp-source

echo "building mrelayd (release)..." >&2
cargo build --release --quiet --bin mrelayd
MRELAYD=${CARGO_TARGET_DIR:-$ROOT/target}/release/mrelayd

B=$(mktemp -d /tmp/mrbench.XXXXXX)
chmod 755 "$B"
STARTED_PEERS=0
if [ -z "${MAILKIT_PEERS_ENV:-}" ]; then
  tests/peers/start.sh "$B/peers" 37000 >"$B/peers.log" 2>&1 || { cat "$B/peers.log" >&2; exit 1; }
  MAILKIT_PEERS_ENV=$B/peers/env.sh
  STARTED_PEERS=1
fi
# shellcheck disable=SC1090
. "$MAILKIT_PEERS_ENV"
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  [ "$STARTED_PEERS" = 1 ] && tests/peers/stop.sh "$B/peers" >/dev/null 2>&1 || true
  rm -rf "$B"
}
trap cleanup EXIT

count() { find "$1/new" "$1/cur" -type f 2>/dev/null | wc -l; }
now() { date +%s.%N; }
wait_for() { # DIR TARGET
  local t0; t0=$(date +%s)
  while [ "$(count "$1")" -lt "$2" ]; do
    sleep 0.05
    if [ $(( $(date +%s) - t0 )) -gt 600 ]; then echo "timeout waiting for $1" >&2; exit 1; fi
  done
}
rss_of() { awk '/VmRSS/ {s+=$2} END {print s+0}' "$@" 2>/dev/null || echo 0; }

# --- mrelayd ---
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$B/mr/mail"
echo 'bench:{PLAIN}x::::::' >"$B/mr/passwd"
cat >"$B/mr/mailkit.toml" <<EOF
hostname = "bench.test"
state_dir = "$B/mr/state"
[users]
passwd_file = "$B/mr/passwd"
mail_location = "$B/mr/mail/%n"
domains = ["example.test"]
[mrelayd]
listen = [ { address = "127.0.0.1:$PORT", role = "smtp" } ]
max_connections = 1000
max_per_ip = 1000
EOF
"$MRELAYD" -c "$B/mr/mailkit.toml" serve 2>"$B/mr/log" &
PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
t0=$(now)
$SRC -s "$S" -m "$M" -l "$L" -f bench@remote.test -t bench@example.test "127.0.0.1:$PORT"
wait_for "$B/mr/mail/bench" "$M"
t1=$(now)
MR_MEM=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
MR_RATE=$(echo "$M / ($t1 - $t0)" | bc -l)

# --- Postfix (the peers' instance, virtual(8) delivery into the catchall Maildir) ---
PF_DIR=$PEER_MAIL_DIR/catchall
before=$(count "$PF_DIR")
PF_PEAK=0
MASTER=$(tr -d ' ' <"$PEER_RUN_DIR/postfix/queue/pid/master.pid")
sample() { # summed RSS of this Postfix instance: master and its children (smtpd, cleanup, ...)
  while :; do
    r=$(rss_of /proc/$MASTER/status)
    for p in $(pgrep -P "$MASTER" || true); do r=$((r + $(rss_of /proc/$p/status))); done
    echo "$r"; sleep 0.2
  done
}
sample >"$B/pf.rss" &
SAMPLER=$!
t0=$(now)
$SRC -s "$S" -m "$M" -l "$L" -f bench@remote.test -t "bench$$@example.test" "127.0.0.1:$PEER_POSTFIX_PORT"
wait_for "$PF_DIR" $((before + M))
t1=$(now)
kill "$SAMPLER" 2>/dev/null || true
PF_PEAK=$(sort -n "$B/pf.rss" | tail -1)
PF_RATE=$(echo "$M / ($t1 - $t0)" | bc -l)
# remove what we added to the shared Maildir
grep -l -r "bench$$@example.test" "$PF_DIR/new" "$PF_DIR/cur" 2>/dev/null | xargs -r rm -f

printf '\nsmtp-source -s %s -m %s -l %s, accept + queue + Maildir delivery, both fsyncing\n' "$S" "$M" "$L"
printf '%-10s %10s %14s\n' "" "msg/s" "peak mem (kB)"
printf '%-10s %10.1f %14s\n' mrelayd "$MR_RATE" "$MR_MEM"
printf '%-10s %10.1f %14s\n' postfix "$PF_RATE" "$PF_PEAK"
printf 'ratio mrelayd/postfix: %.2fx (goal: 2x or better)\n' "$(echo "$MR_RATE / $PF_RATE" | bc -l)"
