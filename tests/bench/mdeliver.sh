#!/bin/bash
# Benchmark: deliver the same N messages with mdeliver (release build), Debian's maildrop and
# Dovecot's dovecot-lda into fresh Maildirs, one process per message as an MTA runs them, and
# print deliveries per second for each and the ratios. Not a test: numbers only.
#
#   usage: tests/bench/mdeliver.sh [N]          (default N=500)
#   env:   ROUNDS=3  rounds per MDA (best round counts; MDAs alternate within a round)
#          SIZE=4096 approximate message size in bytes
#          BENCH_DIR=DIR  where the Maildirs go (default: a fresh /tmp/mdbench.XXXXXX, removed after)
#
# Durability: all three fsync the message file. mdeliver also fsyncs new/ (the directory) before
# exiting 0; dovecot-lda runs with mail_fsync=optimized (its default); maildrop fsyncs the file.
# As root every MDA runs as uid/gid 65534 through setpriv (dovecot-lda refuses uid 0), so each
# delivery pays the same extra exec.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${1:-500}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-4096}
LDA=/usr/lib/dovecot/dovecot-lda

for tool in maildrop "$LDA" setpriv awk; do
  command -v "$tool" >/dev/null || { echo "mdeliver.sh: $tool not installed" >&2; exit 1; }
done

echo "building mdeliver (release)..." >&2
cargo build --release --quiet --bin mdeliver
MDELIVER=${CARGO_TARGET_DIR:-$ROOT/target}/release/mdeliver
[ -x "$MDELIVER" ] || { echo "mdeliver.sh: $MDELIVER not built" >&2; exit 1; }

if [ -n "${BENCH_DIR:-}" ]; then
  B=$BENCH_DIR; mkdir -p "$B"; KEEP=1
else
  B=$(mktemp -d /tmp/mdbench.XXXXXX); KEEP=0
fi
chmod 755 "$B"
cleanup() { [ "$KEEP" = 1 ] || rm -rf "$B"; }
trap cleanup EXIT

if [ "$(id -u)" = 0 ]; then
  AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  OWNER=65534:65534
else
  AS=()
  OWNER=$(id -u):$(id -g)
fi

# The messages: N different ones of about SIZE bytes, LF line ends (what an MTA pipes).
mkdir -p "$B/msgs"
awk -v n="$N" -v size="$SIZE" -v dir="$B/msgs" 'BEGIN {
  srand(42);
  for (i = 1; i <= n; i++) {
    f = sprintf("%s/%06d.eml", dir, i);
    printf "From: Sender %d <sender%d@example.test>\nTo: rcpt@example.test\nSubject: benchmark message %d\nMessage-ID: <bench-%d@example.test>\nDate: Mon, 23 Nov 2026 12:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n", i, i, i, i > f;
    len = 250;
    while (len < size) {
      line = "";
      for (w = 0; w < 10; w++) line = line sprintf("w%05d ", int(rand() * 100000));
      print line > f;
      len += length(line) + 1;
    }
    close(f);
  }
}'

# dovecot-lda: a minimal config of its own (no userdb: it delivers as the invoking user).
mkdir -p "$B/dovecot/run" "$B/dovecot/state"
cat >"$B/dovecot/dovecot.conf" <<EOF
base_dir = $B/dovecot/run
state_dir = $B/dovecot/state
log_path = $B/dovecot/lda.log
ssl = no
mail_fsync = optimized
mail_location = maildir:$B/maildirs/dovecot-lda
EOF
# maildrop: a mailfilter that delivers everything to the Maildir (trailing slash = Maildir).
printf 'DEFAULT="%s/maildirs/maildrop/"\n' "$B" >"$B/mailfilter"
chmod 600 "$B/mailfilter"
chown -R "$OWNER" "$B"

fresh_maildirs() {
  rm -rf "$B/maildirs"
  mkdir -p "$B"/maildirs/{mdeliver,maildrop,dovecot-lda}/{tmp,new,cur}
  chown -R "$OWNER" "$B/maildirs"
  sync
}

# deliver NAME: one process per message; prints the elapsed seconds.
deliver() {
  local name=$1 f start end
  start=$(date +%s%N)
  case $name in
    mdeliver)
      for f in "$B"/msgs/*.eml; do
        "${AS[@]}" "$MDELIVER" -f sender@example.test -d rcpt@example.test "$B/maildirs/mdeliver" <"$f"
      done ;;
    maildrop)
      for f in "$B"/msgs/*.eml; do
        HOME=$B "${AS[@]}" maildrop -f sender@example.test "$B/mailfilter" <"$f"
      done ;;
    dovecot-lda)
      for f in "$B"/msgs/*.eml; do
        HOME=$B "${AS[@]}" "$LDA" -c "$B/dovecot/dovecot.conf" -f sender@example.test <"$f"
      done ;;
  esac
  end=$(date +%s%N)
  local got
  got=$(find "$B/maildirs/$name/new" "$B/maildirs/$name/cur" -type f | wc -l)
  if [ "$got" != "$N" ]; then
    echo "mdeliver.sh: $name delivered $got of $N messages" >&2
    exit 1
  fi
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.6f\n", (b - a) / 1e9 }'
}

declare -A BEST
for r in $(seq 1 "$ROUNDS"); do
  for name in mdeliver maildrop dovecot-lda; do
    fresh_maildirs
    s=$(deliver "$name")
    echo "round $r: $name $s s" >&2
    if [ -z "${BEST[$name]:-}" ] || awk -v a="$s" -v b="${BEST[$name]}" 'BEGIN { exit !(a < b) }'; then
      BEST[$name]=$s
    fi
  done
done

echo
echo "MDA benchmark: $N messages of ~$SIZE bytes, one process per message, best of $ROUNDS rounds"
echo "filesystem: $(df -T "$B" | awk 'NR==2 { print $2 }') ($B)"
printf '%-12s %10s %16s\n' MDA seconds deliveries/s
for name in mdeliver maildrop dovecot-lda; do
  awk -v n="$N" -v s="${BEST[$name]}" -v name="$name" 'BEGIN { printf "%-12s %10.3f %16.1f\n", name, s, n / s }'
done
for other in maildrop dovecot-lda; do
  awk -v a="${BEST[mdeliver]}" -v b="${BEST[$other]}" -v o="$other" \
    'BEGIN { printf "mdeliver / %-12s %6.2fx (deliveries/s ratio; >1 means mdeliver is faster)\n", o, b / a }'
done
