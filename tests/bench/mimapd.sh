#!/bin/bash
# Benchmark: mimapd vs Dovecot's imap on copies of the same Maildirs, one client on loopback.
#   tests/bench/mimapd.sh [COUNT] [ROUNDS]     (default 5000 messages of 4096 bytes, 20 IDLE rounds)
# 1. IDLE push latency (RFC 2177; issue 13's goal: under 2 s): a raw-socket client SELECTs INBOX
#    and IDLEs; ROUNDS times mdeliver (release, as uid 65534) delivers one message and the client
#    times, from mdeliver's start, the untagged "* n EXISTS" that follows. Printed: median and
#    max latency, mdeliver's own median run time (part of every figure), ratio Dovecot/mimapd.
# 2. FETCH of COUNT messages: SELECT, then one `FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])`,
#    twice per server: "cold" (first open: new/ -> cur/, uid list / index built) and "warm".
#    Printed: seconds, MB/s, the ratio Dovecot/mimapd (>1: mimapd faster).
# A server that cannot run a part yet (mimapd before its mailbox commands) prints FAILED with
# its answer and the ratio is left out; the other server's figures still print.
# Needs root (Dovecot serves mail as uid 65534), dovecot-core and dovecot-imapd, python3.
# env: PROFILE=release (default) or debug (no release build: figures for mimapd are then slow).
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${1:-5000}
ROUNDS=${2:-20}
SIZE=4096
PROFILE=${PROFILE:-release}
PY=/usr/bin/python3
[ "$(id -u)" = 0 ] || { echo "mimapd.sh: run as root (Dovecot needs it)" >&2; exit 1; }
for t in dovecot setpriv; do
  command -v "$t" >/dev/null || { echo "mimapd.sh: $t not installed" >&2; exit 1; }
done

TARGET=${CARGO_TARGET_DIR:-target}
if [ "$PROFILE" = release ]; then
  cargo build --release --bin mimapd --bin mdeliver >&2
else
  cargo build --bin mimapd --bin mdeliver >&2
fi
MIMAPD=$TARGET/$PROFILE/mimapd
MDELIVER=$TARGET/$PROFILE/mdeliver

B=$(mktemp -d /tmp/mkbimap.XXXXXX)
chmod 0755 "$B"
MPID=; DPID=
cleanup() {
  [ -n "$MPID" ] && kill "$MPID" 2>/dev/null && wait "$MPID" 2>/dev/null || true
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null || true
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
  echo "mimapd.sh: nothing listens on $1" >&2; return 1
}

# 1. The big mailbox, written once (tmp/ then rename into new/, as an MDA does), copied for each
#    server; each server also gets an empty Maildir for the IDLE part.
echo "seeding $COUNT messages of $SIZE bytes..." >&2
$PY - "$B/seed" "$COUNT" "$SIZE" <<'EOF'
import os, sys, time
md, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in ("tmp", "new", "cur"):
    os.makedirs(os.path.join(md, d), exist_ok=True)
now = int(time.time())
line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n"
for i in range(1, count + 1):
    head = (f"From: Bob <bob@example.test>\nTo: Alice <alice@example.test>\n"
            f"Subject: bench message {i}\nMessage-ID: <bench-{i}-{now}@example.test>\n\n").encode()
    body = bytearray(head)
    while len(body) + len(line) <= size - 1:
        body += line
    body += b"." * (size - 1 - len(body)) + b"\n"
    name = f"{now}.M{i}P{os.getpid()}.bench"
    with open(os.path.join(md, "tmp", name), "wb") as f:
        f.write(body)
    os.rename(os.path.join(md, "tmp", name), os.path.join(md, "new", name))
EOF
for s in mimapd dovecot; do
  mkdir -p "$B/$s-mail"
  cp -a "$B/seed" "$B/$s-mail/bench"
  mkdir -p "$B/$s-mail/idle/cur" "$B/$s-mail/idle/new" "$B/$s-mail/idle/tmp"
done
chown -R 65534:65534 "$B/mimapd-mail" "$B/dovecot-mail"
printf 'bench:{PLAIN}password::::::\nidle:{PLAIN}password::::::\n' >"$B/users"
chmod 0644 "$B/users"

# 2. mimapd from a config file alone (plain IMAP; loopback allows LOGIN without TLS).
MPORT=$(free_port)
cat >"$B/mailkit.toml" <<EOF
hostname = "localhost"
[users]
passwd_file = "$B/users"
mail_location = "$B/mimapd-mail/%u"
[mimapd]
listen = [ { address = "127.0.0.1:$MPORT" } ]
[run_as]
user = "nobody"
EOF
"$MIMAPD" -c "$B/mailkit.toml" serve 2>"$B/mimapd.log" &
MPID=$!
wait_tcp "$MPORT"

# 3. A private Dovecot (imap only, like the peers' template).
DPORT=$(free_port)
mkdir -p "$B/run" "$B/state"
cat >"$B/dovecot.conf" <<EOF
protocols = imap
listen = 127.0.0.1
base_dir = $B/run
state_dir = $B/state
instance_name = mkbimap-$$
log_path = $B/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:~
passdb {
  driver = passwd-file
  args = $B/users
}
userdb {
  driver = passwd-file
  args = $B/users
  default_fields = uid=65534 gid=65534 home=$B/dovecot-mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DPORT
  }
}
EOF
dovecot -c "$B/dovecot.conf"
for _ in $(seq 50); do [ -s "$B/run/master.pid" ] && break; sleep 0.1; done
DPID=$(tr -dc 0-9 <"$B/run/master.pid")
wait_tcp "$DPORT"

# 4. The raw client. `idle PORT MAILDIR ROUNDS`: prints "<median> <max> <mdeliver median>" in
#    seconds; `fetch PORT`: prints "<messages> <octets> <seconds>". Exits 2 with the server's
#    answer when a command is refused.
cat >"$B/client.py" <<'EOF'
import socket, subprocess, sys, time, statistics
mode, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=60)
buf = b""
def line():
    global buf
    while b"\r\n" not in buf:
        chunk = s.recv(1 << 20)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
    l, buf = buf.split(b"\r\n", 1)
    return l
def tagged(tag, literals=False):
    """Reads up to the tagged reply; returns (untagged lines, total bytes of literals)."""
    global buf
    lines, octets = [], 0
    while True:
        l = line()
        if l.endswith(b"}") and b"{" in l:
            n = int(l[l.rindex(b"{") + 1:-1])
            while len(buf) < n:
                chunk = s.recv(1 << 20)
                if not chunk:
                    sys.exit("connection closed in a literal")
                buf += chunk
            buf = buf[n:]
            octets += n
        if l.startswith(tag + b" "):
            if not l.startswith(tag + b" OK"):
                print(l.decode(errors="replace"), file=sys.stderr)
                sys.exit(2)
            return lines, octets
        lines.append(l)
line()
def cmd(tag, text):
    s.sendall(tag + b" " + text + b"\r\n")
    return tagged(tag)
if mode == "idle":
    maildir, rounds, mdeliver = sys.argv[3], int(sys.argv[4]), sys.argv[5]
    cmd(b"a", b"LOGIN idle password")
    lines, _ = cmd(b"b", b"SELECT INBOX")
    exists = [int(l.split()[1]) for l in lines if l.endswith(b" EXISTS")][-1]
    s.sendall(b"c IDLE\r\n")
    l = line()
    if not l.startswith(b"+"):
        print(l.decode(errors="replace"), file=sys.stderr)
        sys.exit(2)
    lat, runs = [], []
    msg = b"From: bob@example.test\nSubject: idle bench\n\nhello\n"
    for i in range(rounds):
        t0 = time.perf_counter()
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                            mdeliver, maildir], input=msg, capture_output=True)
        t1 = time.perf_counter()
        if p.returncode != 0:
            sys.exit("mdeliver: " + p.stderr.decode(errors="replace"))
        exists += 1
        while True:
            l = line()
            if l == b"* %d EXISTS" % exists:
                break
        lat.append(time.perf_counter() - t0)
        runs.append(t1 - t0)
    s.sendall(b"DONE\r\n")
    tagged(b"c")
    cmd(b"z", b"LOGOUT")
    print(f"{statistics.median(lat):.4f} {max(lat):.4f} {statistics.median(runs):.4f}")
else:
    t0 = time.perf_counter()
    cmd(b"a", b"LOGIN bench password")
    lines, _ = cmd(b"b", b"SELECT INBOX")
    s.sendall(b"c FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])\r\n")
    lines, octets = tagged(b"c")
    n = sum(1 for l in lines if b" FETCH " in l)
    cmd(b"z", b"LOGOUT")
    print(f"{n} {octets} {time.perf_counter() - t0:.3f}")
EOF

: >"$B/results"
for s in mimapd dovecot; do
  port=$MPORT; [ $s = dovecot ] && port=$DPORT
  if out=$($PY "$B/client.py" idle "$port" "$B/$s-mail/idle" "$ROUNDS" "$MDELIVER" 2>"$B/err"); then
    read -r med max run <<<"$out"
    printf '%-8s IDLE push  %3d deliveries: median %.3f s, max %.3f s (mdeliver alone: median %.3f s)\n' \
      "$s" "$ROUNDS" "$med" "$max" "$run"
    echo "$s idle $med" >>"$B/results"
  else
    echo "$s IDLE push: FAILED: $(head -c 300 "$B/err")"
  fi
  for pass in cold warm; do
    if out=$($PY "$B/client.py" fetch "$port" 2>"$B/err"); then
      read -r n octets secs <<<"$out"
      mbs=$($PY -c "print(f'{$octets/1e6/$secs:.1f}')")
      printf '%-8s FETCH %-4s %6d msgs %9d octets %7.3f s %7s MB/s\n' "$s" "$pass" "$n" "$octets" "$secs" "$mbs"
      echo "$s $pass $secs" >>"$B/results"
    else
      echo "$s FETCH $pass: FAILED: $(head -c 300 "$B/err")"
    fi
  done
done
$PY - "$B/results" <<'EOF'
import sys
r = {}
for l in open(sys.argv[1]):
    name, part, v = l.split()
    r[(name, part)] = float(v)
for part in ("idle", "cold", "warm"):
    m, d = r.get(("mimapd", part)), r.get(("dovecot", part))
    what = "IDLE push latency" if part == "idle" else f"FETCH {part}"
    if m is None or d is None:
        print(f"ratio {what}: n/a (a server failed)")
    else:
        print(f"ratio {what}: dovecot/mimapd {d/max(m,1e-9):.2f}x (>1: mimapd faster)")
EOF
