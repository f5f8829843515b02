#!/bin/bash
# Benchmark: N sequential submissions of the same message to the same local smtp-sink, one
# process per message as cron or git send-email runs them: msend (release build) versus
# Debian's msmtp. Prints messages per second for each and the ratio. Not a test: numbers only.
#
#   usage: tests/bench/msend.sh [N]            (default N=500)
#   env:   MAILKIT_PEERS_ENV=FILE  running peers (else a private instance is started on
#                                  PORT_BASE, default 35000, and stopped afterwards)
#          ROUNDS=3   rounds per client (best round counts; the clients alternate)
#          SIZE=4096  approximate message size in bytes
#
# Both clients get the same work: plain SMTP to 127.0.0.1 (smtp-sink has no TLS), no AUTH,
# no log file, one recipient, -i style input (no lone-dot handling).
# Measured on the reference box (2 cores): msend ~380 msg/s, msmtp 1.8.23 ~19 msg/s. msmtp sits
# idle ~40 ms per message before its QUIT (strace: small writes without TCP_NODELAY meet the
# delayed ACK on loopback); msend sets TCP_NODELAY. CPU alone: msend ~2 ms, msmtp ~8 ms/message.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${1:-500}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-4096}

command -v msmtp >/dev/null || { echo "msend.sh: msmtp not installed" >&2; exit 1; }

echo "building msend (release)..." >&2
cargo build --release --quiet --bin msend
MSEND=${CARGO_TARGET_DIR:-$ROOT/target}/release/msend
[ -x "$MSEND" ] || { echo "msend.sh: $MSEND not built" >&2; exit 1; }

B=$(mktemp -d /tmp/msbench.XXXXXX)
chmod 755 "$B"
STARTED=0
cleanup() {
  if [ "$STARTED" = 1 ]; then tests/peers/stop.sh "$B/peers" >/dev/null 2>&1 || true; fi
  rm -rf "$B"
}
trap cleanup EXIT
if [ -z "${MAILKIT_PEERS_ENV:-}" ]; then
  mkdir -p "$B/peers"
  tests/peers/start.sh "$B/peers" "${PORT_BASE:-35000}" >"$B/start.log" 2>&1 \
    || { cat "$B/start.log" >&2; exit 1; }
  STARTED=1
  MAILKIT_PEERS_ENV=$B/peers/env.sh
fi
# shellcheck disable=SC1090
. "$MAILKIT_PEERS_ENV"

# The message: headers plus about SIZE bytes of body, LF line ends.
{
  printf 'From: bench@example.test\nTo: sink@example.test\nSubject: bench\n'
  printf 'Date: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <bench@example.test>\n\n'
  i=0
  while [ $((i * 64)) -lt "$SIZE" ]; do
    printf 'line %05d of the benchmark body, some filler text to make it 64b\n' "$i"
    i=$((i + 1))
  done
} >"$B/msg.eml"

cat >"$B/msmtprc" <<RC
defaults
auth off
tls off
account sink
host 127.0.0.1
port $PEER_SINK_PORT
from bench@example.test
account default : sink
RC
chmod 600 "$B/msmtprc"
export HOME=$B   # no user config for either client

run_msend() {
  for _ in $(seq "$N"); do
    "$MSEND" -i -f bench@example.test --no-tls --server "127.0.0.1:$PEER_SINK_PORT" \
      sink@example.test <"$B/msg.eml"
  done
}
run_msmtp() {
  for _ in $(seq "$N"); do
    msmtp -C "$B/msmtprc" -a sink sink@example.test <"$B/msg.eml"
  done
}

now() { date +%s.%N; }
best_msend=0; best_msmtp=0
for r in $(seq "$ROUNDS"); do
  for tool in msend msmtp; do
    t0=$(now); "run_$tool"; t1=$(now)
    rate=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
    echo "round $r: $tool $rate msg/s" >&2
    if [ "$tool" = msend ]; then
      best_msend=$(awk -v a="$best_msend" -v b="$rate" 'BEGIN { print (b > a) ? b : a }')
    else
      best_msmtp=$(awk -v a="$best_msmtp" -v b="$rate" 'BEGIN { print (b > a) ? b : a }')
    fi
  done
done
echo "messages: $N sequential invocations, $(wc -c <"$B/msg.eml") bytes each, to smtp-sink 127.0.0.1:$PEER_SINK_PORT"
echo "msend:  $best_msend msg/s"
echo "msmtp:  $best_msmtp msg/s"
awk -v a="$best_msend" -v b="$best_msmtp" 'BEGIN { printf "ratio msend/msmtp: %.2f\n", a / b }'
