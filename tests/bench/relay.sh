#!/bin/bash
# Benchmark (issue 5): remote delivery by MX. N queued messages (default 5000) to DOMAINS
# domains (default 50: d01.bench.test ... d50.bench.test), each domain with its own MX host and
# address (mx.dNN.bench.test = 127.0.1.NN) served by dnsmasq, all pointing at one Postfix
# smtp-sink listening on port 25 of every loopback address. mrelayd (release build) versus Postfix
# relaying the same load with the same DNS. Prints per side: messages, seconds, messages per
# second OUT, connections opened to the sink, and the ratios mrelayd/Postfix. Not a test.
#
#   usage: tests/bench/relay.sh
#   env:   N=5000  DOMAINS=50 (at most 250)  SIZE=4096 (message body bytes, smtp-source -l)
#          SIDES="mrelayd postfix"  which sides to run, in this order
#          ROUNDS=1      rounds (each injects anew); the fastest round per side gives the ratio
#          MRELAYD=path  use this mrelayd binary, do not build (default: cargo build --release,
#                        ${CARGO_TARGET_DIR:-target}/release/mrelayd, as the other benches)
#          KEEP=1        keep the scratch directory (logs, queues) and print its path
#   needs: root (for the private namespaces), the packages of tests/peers/install.sh
#          (postfix, smtp-sink/smtp-source, dnsmasq, dig, iproute2). It does not use running
#          peers: it starts its own dnsmasq, smtp-sink and Postfix instance.
#
# Isolation: the script re-executes itself under `unshare --mount --net`: a private network
# namespace (only its own loopback: port 25 and 53 are free, nothing else on the machine
# disturbs the counters) and a private mount namespace in which a resolv.conf saying
# `nameserver 127.0.0.1` is bind-mounted over /etc/resolv.conf, because Postfix resolves through
# libc (port 53 only). mrelayd gets `resolver = "127.0.0.1:53"`: the same dnsmasq. Postfix does
# real MX lookups (no transport map, no [host] routes); the host's resolver is untouched.
#
# Same load for both sides: the sink is DOWN while smtp-source injects the messages (one
# smtp-source per domain, all in parallel, so the queue is interleaved across domains); every
# delivery attempt is refused and all N messages end up deferred (Postfix: deferred queue;
# mrelayd: msg/ and state/ entries), first retry not before an hour. Then the sink starts
# (fresh counters), the clock starts, `postqueue -f` / `mrelayd flush` asks the running MTA to
# retry everything now, and the clock stops when smtp-sink has received all N messages
# (its -c counter `mesg=`). The injection is not timed.
#
# Connections: the kernel's TCP PassiveOpens counter of the private namespace from the flush to
# the end (only the sink accepts connections in that window), cross-checked with smtp-sink's own
# session counter (`sess=`) after the MTA was stopped (which closes its cached connections).
# The clock is read by tests/bench/relay/sinkwatch.py, which follows the sink's counters as they
# come, so the bench does not busy-poll during the timed window (2 cores: forks would slow both
# sides); only `ss` samples the open connections every 0.2 s.
#
# Columns: msgs (received by the sink), seconds (flush command to the last message at the sink),
# msgs/s, connections (opened to the sink), msgs/conn, peak-open (most connections open at the
# sink at once, busy or cached idle, sampled every 0.2 s). Details and the logs' own counts go to
# stderr. One round per side takes about 30-45 s (mostly the untimed injection).
#
# Limits at their defaults: Postfix 100 processes globally (default_process_limit), mrelayd 20
# (delivery_workers and [mrelayd.remote] concurrency); 20 per destination on both
# (default_destination_concurrency_limit / destination_concurrency), opportunistic
# TLS on both (smtp-sink offers no STARTTLS, so plain SMTP), IPv4 only, defaults otherwise
# (Postfix keeps idle connections 2 s, reuses without count limit; mrelayd 5 s, 100 messages).
# mrelayd's [mrelayd] delivery_workers (default 20) is left at its default: it also bounds how
# many messages mrelayd delivers at once. Each run uses its own namespaces, so two runs (or the
# peers and tests of others) never collide.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${N:-5000}
DOMAINS=${DOMAINS:-50}
SIZE=${SIZE:-4096}
SIDES=${SIDES:-mrelayd postfix}
ROUNDS=${ROUNDS:-1}
SELF=$ROOT/tests/bench/relay.sh

if [ "${1:-}" != --inside ]; then
  [ "$(id -u)" = 0 ] || { echo "relay.sh: run as root (private network and mount namespaces)" >&2; exit 1; }
  [ "$DOMAINS" -ge 1 ] && [ "$DOMAINS" -le 250 ] || { echo "relay.sh: DOMAINS must be 1..250" >&2; exit 1; }
  [ "$N" -ge "$DOMAINS" ] || { echo "relay.sh: N must be at least DOMAINS" >&2; exit 1; }
  for t in postfix postqueue /usr/sbin/smtp-sink /usr/sbin/smtp-source dnsmasq dig unshare ip; do
    command -v "$t" >/dev/null || { echo "relay.sh: $t not installed (tests/peers/install.sh)" >&2; exit 1; }
  done
  if [ -z "${MRELAYD:-}" ] && [[ " $SIDES " == *" mrelayd "* ]]; then
    echo "building mrelayd (release)..." >&2
    cargo build --release --quiet --bin mrelayd
    MRELAYD=${CARGO_TARGET_DIR:-$ROOT/target}/release/mrelayd
  fi
  export N DOMAINS SIZE SIDES ROUNDS MRELAYD="${MRELAYD:-}" KEEP="${KEEP:-}"
  exec unshare --mount --net --propagation private -- /bin/bash "$SELF" --inside
fi

# ---------------------------------------------------------------- inside the namespaces ----
ip link set lo up
B=$(mktemp -d /tmp/rlbench.XXXXXX)
chmod 755 "$B"
echo "nameserver 127.0.0.1" >"$B/resolv.conf"
mount --bind "$B/resolv.conf" /etc/resolv.conf

SINK_PID=
MR_PID=
SAMPLER=
PF_CONF=$B/pf/conf
cleanup() {
  set +e
  [ -n "$MR_PID" ] && kill "$MR_PID" 2>/dev/null && wait "$MR_PID" 2>/dev/null
  [ -f "$B/pf/queue/pid/master.pid" ] && postfix -c "$PF_CONF" stop >/dev/null 2>&1
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null
  [ -f "$B/dnsmasq.pid" ] && kill "$(cat "$B/dnsmasq.pid")" 2>/dev/null
  if [ -n "$KEEP" ]; then echo "relay.sh: kept $B" >&2; else rm -rf "$B"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
die() { echo "relay.sh: $*" >&2; exit 1; }
# wait_until SECONDS WHAT COMMAND...: poll COMMAND every 50 ms
wait_until() {
  local limit=$1 what=$2 t0; shift 2; t0=$(date +%s)
  until "$@"; do
    [ $(( $(date +%s) - t0 )) -lt "$limit" ] || die "timeout (${limit}s) waiting for $what"
    sleep 0.05
  done
}
listening() { [ -n "$(ss -Hltn "sport = :$1")" ]; }
passive_opens() { awk '/^Tcp:/ { if (h) { print $7; exit } h = 1 }' /proc/net/snmp; }
dom() { printf 'd%02d.bench.test' "$1"; }

# ---- DNS: one MX host per domain, each on its own loopback address --------------------------
{
  cat <<EOF
port=53
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
no-poll
local=/test/
pid-file=$B/dnsmasq.pid
user=root
log-facility=$B/dnsmasq.log
EOF
  for i in $(seq "$DOMAINS"); do
    echo "mx-host=$(dom "$i"),mx.$(dom "$i"),10"
    echo "host-record=mx.$(dom "$i"),127.0.1.$i"
  done
} >"$B/dnsmasq.conf"
dnsmasq -C "$B/dnsmasq.conf" </dev/null >"$B/dnsmasq.start.log" 2>&1 || { cat "$B/dnsmasq.start.log" >&2; die "dnsmasq did not start"; }
wait_until 5 dnsmasq test -s "$B/dnsmasq.pid"
got=$(dig @127.0.0.1 -p 53 +short +tries=5 A "mx.$(dom "$DOMAINS")")
[ "$got" = "127.0.1.$DOMAINS" ] || die "dnsmasq answers '$got' for mx.$(dom "$DOMAINS")"

# ---- smtp-sink on port 25 of every address: down while injecting, up for the drain ---------
# -c: counters "sess=S quit=Q mesg=M" (sessions ended, QUITs, messages received), updated at the
# end of each session and at each "."; relay/sinkwatch.py reads them: it writes NAME.sink.done
# with the time the N-th message arrived, and NAME.sink with the last counters when the sink ends.
start_sink() { # NAME
  rm -f "$B/$1.sink" "$B/$1.sink.done"
  setsid /usr/sbin/smtp-sink -c -4 -u nobody -m 1000 -h sink.bench.test ":25" 1000 </dev/null \
    2>"$B/$1.sink.err" > >(exec /usr/bin/python3 "$ROOT/tests/bench/relay/sinkwatch.py" "$N" "$B/$1.sink") &
  SINK_PID=$!
  wait_until 5 smtp-sink listening 25
}
stop_sink() { kill "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; SINK_PID=; }
sink_field() { # FILE FIELD: the value of FIELD (sess, quit, mesg) in sinkwatch's counter line
  awk -v f="$2=" '{ for (i = 1; i <= NF; i++) if (index($i, f) == 1) v = substr($i, length(f) + 1) }
    END { print v + 0 }' "$1" 2>/dev/null
}

# ---- load: one smtp-source per domain, in parallel, the N messages spread evenly ------------
inject() { # PORT LOG
  local pids=() i m rc=0
  for i in $(seq "$DOMAINS"); do
    m=$(( N / DOMAINS + (i <= N % DOMAINS ? 1 : 0) ))
    /usr/sbin/smtp-source -s 1 -m "$m" -l "$SIZE" -f bench@src.bench.test \
      -t "rcpt@$(dom "$i")" "127.0.0.1:$1" >>"$2" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  [ "$rc" = 0 ] || { tail -5 "$2" >&2; die "smtp-source failed (see above)"; }
}

# ---- the drain, the same for both sides ------------------------------------------------------
# drain NAME FLUSH-COMMAND...: sink up, clock, flush, wait for all N at the sink.
# Sets DRAIN_SECS, DRAIN_CONNS (TCP PassiveOpens in the namespace), DRAIN_PEAK (open conns).
drain() {
  local name=$1; shift
  start_sink "$name"
  local c0 t0 t1 c1
  # connections open at the sink (busy and cached idle), sampled every 0.2 s: the peak is printed
  while :; do ss -Htn state established '( sport = :25 )' | wc -l; sleep 0.2; done >"$B/$name.open" &
  SAMPLER=$!
  c0=$(passive_opens)
  t0=$(now)
  "$@" >"$B/$name.flush.log" 2>&1 || { cat "$B/$name.flush.log" >&2; die "$name: flush failed"; }
  local limit=$(( 60 + N / 20 )) start; start=$(date +%s)
  until [ -s "$B/$name.sink.done" ]; do
    if [ $(( $(date +%s) - start )) -ge "$limit" ]; then
      kill "$SAMPLER" 2>/dev/null || true; SAMPLER=
      stop_sink
      echo "relay.sh: $name: only $(sink_field "$B/$name.sink" mesg) of $N messages at the sink after ${limit}s" >&2
      return 1
    fi
    sleep 0.2
  done
  t1=$(cat "$B/$name.sink.done")
  c1=$(passive_opens)
  kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=
  DRAIN_PEAK=$(sort -n "$B/$name.open" | tail -1)
  DRAIN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  DRAIN_CONNS=$((c1 - c0))
}
# After the MTA stopped (its cached connections closed): the sink's own counts, checked
# against the kernel's count of connections and against N.
sink_report() { # NAME
  sleep 0.5
  stop_sink
  wait_until 5 "smtp-sink's final counters" test -s "$B/$1.sink"
  SINK_MSGS=$(sink_field "$B/$1.sink" mesg)
  SINK_SESS=$(sink_field "$B/$1.sink" sess)
  SINK_QUIT=$(sink_field "$B/$1.sink" quit)
  if [ "$SINK_SESS" != "$DRAIN_CONNS" ]; then
    echo "relay.sh: $1: smtp-sink counted $SINK_SESS sessions, the kernel $DRAIN_CONNS connections" >&2
  fi
  if [ "$SINK_MSGS" != "$N" ]; then
    echo "relay.sh: $1: smtp-sink received $SINK_MSGS messages, expected $N" >&2
  fi
}

count_files() { find "$@" -type f 2>/dev/null | wc -l; }
RESULTS=()

# ---------------------------------------------------------------- Postfix ----------------------
run_postfix() {
  mkdir -p "$PF_CONF" "$B/pf/queue" "$B/pf/data"
  chown postfix:postfix "$B/pf/data"
  cat >"$PF_CONF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $B/pf/queue
data_directory = $B/pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = $B/pf/log
maillog_file_prefixes = $B
alias_maps =
alias_database =
local_recipient_maps =
relayhost =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtp_tls_security_level = may
# nothing is retried by itself while the load is injected (mrelayd: retry_initial_secs)
minimal_backoff_time = 3600s
maximal_backoff_time = 7200s
queue_run_delay = 3600s
# the defaults that matter, written out: 100 processes, 20 per destination
default_process_limit = 100
default_destination_concurrency_limit = 20
EOF
  cat >"$PF_CONF/master.cf" <<'EOF'
127.0.0.1:2526 inet n -  n  -  -  smtpd
pickup    unix  n  -  n  60  1  pickup
cleanup   unix  n  -  n  -   0  cleanup
qmgr      unix  n  -  n  300 1  qmgr
tlsmgr    unix  -  -  n  1000? 1 tlsmgr
rewrite   unix  -  -  n  -   -  trivial-rewrite
bounce    unix  -  -  n  -   0  bounce
defer     unix  -  -  n  -   0  bounce
trace     unix  -  -  n  -   0  bounce
verify    unix  -  -  n  -   1  verify
flush     unix  n  -  n  1000? 0 flush
proxymap  unix  -  -  n  -   -  proxymap
proxywrite unix -  -  n  -   1  proxymap
smtp      unix  -  -  n  -   -  smtp
relay     unix  -  -  n  -   -  smtp
showq     unix  n  -  n  -   -  showq
error     unix  -  -  n  -   -  error
retry     unix  -  -  n  -   -  error
discard   unix  -  -  n  -   -  discard
anvil     unix  -  -  n  -   1  anvil
scache    unix  -  -  n  -   1  scache
postlog   unix-dgram n - n  -   1  postlogd
EOF
  rm -f "$B/pf/log"   # this round's log only
  { postfix -c "$PF_CONF" set-permissions || true; postfix -c "$PF_CONF" start; } \
    >"$B/pf/start.log" 2>&1 || { cat "$B/pf/start.log" >&2; die "postfix did not start"; }
  wait_until 10 "postfix smtpd" listening 2526

  echo "postfix: injecting $N messages (smtp-sink down)..." >&2
  inject 2526 "$B/pf/inject.log"
  # all N deferred, nothing in flight
  pf_settled() {
    [ "$(count_files "$B/pf/queue/deferred")" -ge "$N" ] &&
      [ "$(count_files "$B/pf/queue/incoming" "$B/pf/queue/active" "$B/pf/queue/maildrop")" = 0 ]
  }
  wait_until $(( 60 + N / 20 )) "postfix: all messages deferred" pf_settled

  echo "postfix: flushing..." >&2
  drain postfix postqueue -c "$PF_CONF" -f
  local master; master=$(tr -dc 0-9 <"$B/pf/queue/pid/master.pid")
  postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
  pf_gone() { ! kill -0 "$master" 2>/dev/null; }
  wait_until 10 "postfix to stop" pf_gone
  sink_report postfix
  # Postfix's own view: deliveries that opened their connection (no conn_use=) vs reused ones
  local sent reused
  sent=$(grep -c 'status=sent' "$B/pf/log" || true)
  reused=$(grep 'status=sent' "$B/pf/log" | grep -c 'conn_use=' || true)
  echo "postfix: log: $sent sent, $reused over a reused connection; smtp-sink: sess=$SINK_SESS quit=$SINK_QUIT mesg=$SINK_MSGS" >&2
  RESULTS+=("postfix $N $DRAIN_SECS $DRAIN_CONNS $DRAIN_PEAK")
}

# ---------------------------------------------------------------- mrelayd ----------------------
run_mrelayd() {
  [ -x "$MRELAYD" ] || die "mrelayd binary $MRELAYD not found"
  mkdir -p "$B/mr/mail"
  echo 'bench:{PLAIN}x::::::' >"$B/mr/passwd"
  cat >"$B/mr/mailkit.toml" <<EOF
hostname = "relay.bench.test"
state_dir = "$B/mr/state"
[users]
passwd_file = "$B/mr/passwd"
mail_location = "$B/mr/mail/%n"
domains = ["local.bench.test"]
[mrelayd]
listen = [ { address = "127.0.0.1:2527", role = "smtp" } ]
max_connections = 1000
max_per_ip = 1000
[mrelayd.remote]
resolver = "127.0.0.1:53"
port = 25
tls = "may"
retry_initial_secs = 3600
retry_max_secs = 7200
concurrency = 100
destination_concurrency = 20
EOF
  "$MRELAYD" -c "$B/mr/mailkit.toml" serve 2>"$B/mr/log" &
  MR_PID=$!
  wait_until 10 "mrelayd to listen" listening 2527

  echo "mrelayd: injecting $N messages (smtp-sink down)..." >&2
  inject 2527 "$B/mr/inject.log"
  # all N accepted (msg/) and deferred (state/ written after the failed attempt)
  mr_settled() {
    kill -0 "$MR_PID" 2>/dev/null || { tail -5 "$B/mr/log" >&2; die "mrelayd exited"; }
    [ "$(count_files "$B/mr/state/queue/msg")" -ge "$N" ] &&
      [ "$(count_files "$B/mr/state/queue/state")" -ge "$N" ]
  }
  wait_until $(( 60 + N / 20 )) "mrelayd: all messages deferred (msg/ and state/)" mr_settled

  echo "mrelayd: flushing..." >&2
  local ok=1
  drain mrelayd "$MRELAYD" -c "$B/mr/mailkit.toml" flush || ok=0
  kill "$MR_PID" 2>/dev/null || true; wait "$MR_PID" 2>/dev/null || true; MR_PID=
  if [ "$ok" = 0 ]; then
    echo "mrelayd: last log lines:" >&2; tail -5 "$B/mr/log" >&2
    stop_sink
    RESULTS+=("mrelayd failed")
    return
  fi
  sink_report mrelayd
  local sent
  sent=$(grep -c 'status=sent' "$B/mr/log" || true)
  echo "mrelayd: log: $sent sent; smtp-sink: sess=$SINK_SESS quit=$SINK_QUIT mesg=$SINK_MSGS" >&2
  RESULTS+=("mrelayd $N $DRAIN_SECS $DRAIN_CONNS $DRAIN_PEAK")
}

for round in $(seq "$ROUNDS"); do
  for side in $SIDES; do
    case $side in
      postfix) run_postfix ;;
      mrelayd) run_mrelayd ;;
      *) die "unknown side $side (SIDES=\"mrelayd postfix\")" ;;
    esac
  done
done

# ---------------------------------------------------------------- report -----------------------
printf '\n%s messages (smtp-source -l %s) to %s domains, MX via dnsmasq -> smtp-sink; deferred first, then flushed\n' \
  "$N" "$SIZE" "$DOMAINS"
printf '%-8s %6s %8s %9s %12s %10s %11s\n' side msgs seconds msgs/s connections msgs/conn peak-open
for r in "${RESULTS[@]}"; do
  # shellcheck disable=SC2086
  set -- $r
  if [ "$2" = failed ]; then printf '%-8s %s\n' "$1" "FAILED (see above)"; continue; fi
  awk -v s="$1" -v m="$2" -v t="$3" -v c="$4" -v p="$5" \
    'BEGIN { printf "%-8s %6d %8.2f %9.1f %12d %10.1f %11d\n", s, m, t, m / t, c, (c ? m / c : 0), p }'
  # the fastest round of each side counts for the ratio
  best=R_$1
  if [ -z "${!best:-}" ] || awk -v a="$3" -v b="${!best%% *}" 'BEGIN { exit !(a < b) }'; then
    printf -v "$best" '%s %s' "$3" "$4"
  fi
done
if [ -n "${R_mrelayd:-}" ] && [ -n "${R_postfix:-}" ]; then
  # shellcheck disable=SC2086
  set -- $R_mrelayd $R_postfix
  awk -v mt="$1" -v mc="$2" -v pt="$3" -v pc="$4" -v r="$ROUNDS" 'BEGIN {
    printf "ratio mrelayd/postfix%s: msgs/s %.2fx (goal: >= 1x), connections %.2fx\n",
      (r > 1 ? " (fastest rounds)" : ""), pt / mt, mc / pc }'
fi
