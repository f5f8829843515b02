#!/bin/bash
# Benchmark: mfetch vs fetchmail (with an MDA) and mbsync, fetching from one Dovecot on loopback.
#   tests/bench/mfetch.sh [COUNT] [SIZE]        (default 5000 messages of 8192 bytes)
# A private Dovecot (IMAP and POP3, no TLS: the bench measures fetching, not ciphers) serves one
# maildrop of COUNT messages of SIZE bytes. Each client fetches all of it, keeping it on the
# server, into an empty local Maildir, with fsync on for all: mfetch (its Maildir writer fsyncs
# each file and the directory), fetchmail --mda "mdeliver DIR" (mdeliver fsyncs the same way;
# fetchmail has no Maildir of its own), mbsync (Fsync yes, its default). Printed: seconds per
# client and protocol, and the ratios fetchmail/mfetch and mbsync/mfetch (>1: mfetch faster).
# Issue 14's goal: mfetch 2x faster than fetchmail, at least as fast as mbsync. Last, `mfetch
# --idle` latency: a message put into another (empty) maildrop of that Dovecot until it is in
# mfetch's local Maildir, 10 times; it includes Dovecot's own IDLE delay (about 0.5 s, see
# tests/bench/mimapd.sh). Goal: under 2 s.
# Needs root (Dovecot serves mail as uid 65534), dovecot-imapd, dovecot-pop3d, fetchmail, isync,
# python3. PROFILE=debug uses target/debug (a smoke run; figures only mean something in release).
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${1:-5000}
SIZE=${2:-8192}
PY=/usr/bin/python3
PROFILE=${PROFILE:-release}
[ "$(id -u)" = 0 ] || { echo "mfetch.sh: run as root (Dovecot needs it)" >&2; exit 1; }
for t in dovecot fetchmail mbsync; do
  command -v "$t" >/dev/null || { echo "mfetch.sh: $t not found (tests/peers/install.sh)" >&2; exit 1; }
done

TARGET=${CARGO_TARGET_DIR:-target}
if [ "$PROFILE" = release ]; then
  cargo build --release --bin mfetch --bin mdeliver >&2
else
  cargo build --bin mfetch --bin mdeliver >&2
fi
MFETCH=$(realpath "$TARGET/$PROFILE/mfetch")
MDELIVER=$(realpath "$TARGET/$PROFILE/mdeliver")

B=$(mktemp -d /tmp/mkbfetch.XXXXXX)
chmod 0755 "$B"
cleanup() {
  [ -f "$B/dovecot.conf" ] && dovecot -c "$B/dovecot.conf" stop 2>/dev/null || true
  sleep 0.3
  rm -rf "$B"
}
trap cleanup EXIT

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_tcp() {
  for _ in $(seq 100); do
    $PY -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "mfetch.sh: nothing listens on $1" >&2; return 1
}

# 1. The maildrop (tmp/ then rename into new/, as an MDA does).
echo "seeding $COUNT messages of $SIZE bytes..." >&2
$PY - "$B/mail/bench" "$COUNT" "$SIZE" <<'EOF'
import os, sys, time
md, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in ("tmp", "new", "cur"):
    os.makedirs(os.path.join(md, d), exist_ok=True)
now = int(time.time())
line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n"
for i in range(1, count + 1):
    head = (f"Return-Path: <bob@example.test>\nFrom: Bob <bob@example.test>\n"
            f"To: Alice <alice@example.test>\nSubject: bench message {i}\n"
            f"Message-ID: <bench-{i}-{now}@example.test>\n\n").encode()
    body = bytearray(head)
    while len(body) + len(line) <= size - 1:
        body += line
    body += b"." * (size - 1 - len(body)) + b"\n"
    name = f"{now}.M{i}P{os.getpid()}.bench"
    with open(os.path.join(md, "tmp", name), "wb") as f:
        f.write(body)
    os.rename(os.path.join(md, "tmp", name), os.path.join(md, "new", name))
EOF
mkdir -p "$B/mail/idle/tmp" "$B/mail/idle/new" "$B/mail/idle/cur"
chown -R 65534:65534 "$B/mail"
printf 'bench:{PLAIN}password::::::\nidle:{PLAIN}password::::::\n' >"$B/users"
chmod 0644 "$B/users"

# 2. A private Dovecot, IMAP and POP3 in clear on loopback.
IPORT=$(free_port)
PPORT=$(free_port)
mkdir -p "$B/run" "$B/state"
cat >"$B/dovecot.conf" <<EOF
protocols = imap pop3
listen = 127.0.0.1
base_dir = $B/run
state_dir = $B/state
instance_name = mkbfetch-$$
log_path = $B/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:~
passdb {
  driver = passwd-file
  args = $B/users
}
userdb {
  driver = passwd-file
  args = $B/users
  default_fields = uid=65534 gid=65534 home=$B/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IPORT
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $PPORT
  }
  inet_listener pop3s {
    port = 0
  }
}
protocol imap {
  mail_max_userip_connections = 100
}
EOF
dovecot -c "$B/dovecot.conf" </dev/null >"$B/dovecot.start.log" 2>&1
wait_tcp "$IPORT"
wait_tcp "$PPORT"

count_md() { find "$1/new" "$1/cur" -type f 2>/dev/null | wc -l; }
now() { $PY -c 'import time; print(time.perf_counter())'; }
timed() { # name proto maildir command...
  local name=$1 proto=$2 md=$3
  shift 3
  local t0 t1
  t0=$(now)
  "$@" >"$B/$name-$proto.log" 2>&1 || { echo "$name $proto failed:" >&2; tail -n 20 "$B/$name-$proto.log" >&2; exit 1; }
  t1=$(now)
  local n
  n=$(count_md "$md")
  [ "$n" = "$COUNT" ] || { echo "$name $proto: $n of $COUNT messages in $md" >&2; exit 1; }
  local secs
  secs=$($PY -c "print(f'{$t1 - $t0:.3f}')")
  printf '%-10s %-5s %6d msgs %8s s\n' "$name" "$proto" "$n" "$secs"
  echo "$name $proto $secs" >>"$B/results"
}

# 3. mfetch, POP3 and IMAP, straight into a Maildir.
mkdir -p "$B/c"
for proto in pop3 imap; do
  md=$B/c/mfetch-$proto
  url="$proto://bench@127.0.0.1:$([ $proto = pop3 ] && echo $PPORT || echo $IPORT)/"
  [ $proto = imap ] && url="${url}INBOX"
  timed mfetch $proto "$md" env -u MAILKIT_CONFIG XDG_STATE_HOME="$B/c/state-$proto" \
    "$MFETCH" -q --allow-plaintext --password-command "echo password" --maildir "$md" "$url"
done

# 4. fetchmail with mdeliver as its MDA.
for proto in pop3 imap; do
  md=$B/c/fetchmail-$proto
  mkdir -p "$md"/{tmp,new,cur}
  port=$([ $proto = pop3 ] && echo $PPORT || echo $IPORT)
  rc=$B/c/fetchmailrc-$proto
  cat >"$rc" <<EOF
set no syslog
poll 127.0.0.1 port $port protocol $proto auth password
  user "bench" password "password" is root here
  keep fetchall no sslcertck sslproto ''
  mda "$MDELIVER $md"
EOF
  chmod 0600 "$rc"
  timed fetchmail $proto "$md" env HOME="$B/c" fetchmail -f "$rc" -i "$B/c/fetchids-$proto" --nodetach --silent
done

# 5. mbsync (IMAP only).
md=$B/c/mbsync-imap
mkdir -p "$md"
cat >"$B/c/mbsyncrc" <<EOF
IMAPAccount bench
Host 127.0.0.1
Port $IPORT
User bench
Pass password
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account bench

MaildirStore local
Path $md/
Inbox $md

Channel bench
Far :remote:
Near :local:
Patterns INBOX
Create Near
Sync Pull
Expunge None
SyncState $B/c/mbsync-state/
EOF
mkdir -p "$B/c/mbsync-state"
timed mbsync imap "$md" mbsync -q -c "$B/c/mbsyncrc" bench

$PY - "$B/results" <<'EOF'
import sys
r = {}
for l in open(sys.argv[1]):
    name, proto, secs = l.split()
    r[(name, proto)] = float(secs)
for proto in ("pop3", "imap"):
    m = r[("mfetch", proto)]
    line = f"ratio {proto}: fetchmail/mfetch {r[('fetchmail', proto)] / m:.2f}x"
    if ("mbsync", proto) in r:
        line += f", mbsync/mfetch {r[('mbsync', proto)] / m:.2f}x"
    print(line + " (>1: mfetch faster)")
EOF

# 6. mfetch --idle: delivery on the server until the message is in the local Maildir.
md=$B/c/mfetch-idle
env -u MAILKIT_CONFIG XDG_STATE_HOME="$B/c/state-idle" "$MFETCH" -q --idle --allow-plaintext \
  --password-command "echo password" --maildir "$md" "imap://idle@127.0.0.1:$IPORT/INBOX" \
  >"$B/mfetch-idle.log" 2>&1 &
IDLE_PID=$!
$PY - "$B/mail/idle" "$md" <<'EOF'
import os, sys, time, statistics
server, local = sys.argv[1], sys.argv[2]
def count():
    return sum(len(os.listdir(os.path.join(local, d))) for d in ("new", "cur")
               if os.path.isdir(os.path.join(local, d)))
time.sleep(2)  # mfetch logs in and starts IDLE
lat = []
for i in range(1, 11):
    name = f"{int(time.time())}.idle{i}.bench"
    with open(os.path.join(server, "tmp", name), "wb") as f:
        f.write(f"Subject: idle {i}\nMessage-ID: <idle-{i}-{time.time()}@x>\n\nhi\n".encode())
    os.chown(os.path.join(server, "tmp", name), 65534, 65534)
    t0 = time.perf_counter()
    os.rename(os.path.join(server, "tmp", name), os.path.join(server, "new", name))
    while count() < i:
        if time.perf_counter() - t0 > 30:
            sys.exit(f"mfetch --idle: message {i} not fetched within 30 s")
        time.sleep(0.005)
    lat.append(time.perf_counter() - t0)
    time.sleep(0.3)
print(f"mfetch --idle latency (Dovecot IMAP IDLE, 10 deliveries): median {statistics.median(lat):.3f} s, max {max(lat):.3f} s (goal < 2 s)")
EOF
kill -TERM "$IDLE_PID" 2>/dev/null || true
wait "$IDLE_PID" 2>/dev/null || true
