#!/bin/bash
# Benchmark: mpopd vs Dovecot's pop3 on the same maildrop, one client on loopback.
#   tests/bench/mpopd.sh [COUNT] [SIZE]        (default 10000 messages of 4096 bytes)
# A maildrop of COUNT messages (LF line ends, SIZE bytes each, no ,S=/,W= in the names so both
# servers must size them) is copied once for each server. One client logs in, sends LIST, RETRs
# every message (one command at a time) and QUITs without deleting; it runs twice per server:
# "cold" (first login: new/ -> cur/, Dovecot builds its index) and "warm". Printed per run:
# seconds, MB/s (message octets from LIST / seconds), the serving process's peak RSS (VmHWM:
# the mpopd daemon; Dovecot's pop3 process for the session), and the ratio Dovecot/mpopd.
# Needs root (Dovecot serves mail as uid 65534), dovecot-core and dovecot-pop3d, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${1:-10000}
SIZE=${2:-4096}
PY=/usr/bin/python3
[ "$(id -u)" = 0 ] || { echo "mpopd.sh: run as root (Dovecot needs it)" >&2; exit 1; }

TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --bin mpopd >&2
MPOPD=$TARGET/release/mpopd

B=$(mktemp -d /tmp/mkbpop.XXXXXX)
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
  echo "mpopd.sh: nothing listens on $1" >&2; return 1
}

# 1. The maildrop, written once (tmp/ then rename into new/, as an MDA does).
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
mkdir -p "$B/mpopd-mail" "$B/dovecot-mail"
cp -a "$B/seed" "$B/mpopd-mail/bench"
cp -a "$B/seed" "$B/dovecot-mail/bench"
chown -R 65534:65534 "$B/dovecot-mail"
echo 'bench:{PLAIN}password::::::' >"$B/users"
chmod 0644 "$B/users"

# 2. mpopd from a config file alone.
MPORT=$(free_port)
cat >"$B/mailkit.toml" <<EOF
hostname = "localhost"
[users]
passwd_file = "$B/users"
mail_location = "$B/mpopd-mail/%u"
[mpopd]
listen = [ { address = "127.0.0.1:$MPORT" } ]
EOF
"$MPOPD" -c "$B/mailkit.toml" serve 2>"$B/mpopd.log" &
MPID=$!
wait_tcp "$MPORT"

# 3. A private Dovecot (pop3 only, like the peers' template).
DPORT=$(free_port)
mkdir -p "$B/run" "$B/state"
cat >"$B/dovecot.conf" <<EOF
protocols = pop3
listen = 127.0.0.1
base_dir = $B/run
state_dir = $B/state
instance_name = mkbench-$$
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
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $DPORT
  }
}
EOF
dovecot -c "$B/dovecot.conf"
for _ in $(seq 50); do [ -s "$B/run/master.pid" ] && break; sleep 0.1; done
DPID=$(tr -dc 0-9 <"$B/run/master.pid")
wait_tcp "$DPORT"

# 4. The client: LIST, RETR 1..n, QUIT; reads the server's VmHWM before QUIT.
client() { # port pid-command
  $PY - "$1" "$2" <<'EOF'
import socket, subprocess, sys, time
port, pidcmd = int(sys.argv[1]), sys.argv[2]
def hwm_kib():
    total = 0
    for pid in subprocess.run(["sh", "-c", pidcmd], capture_output=True, text=True).stdout.split():
        with open(f"/proc/{pid}/status") as f:
            for l in f:
                if l.startswith("VmHWM:"):
                    total += int(l.split()[1])
    return total
t0 = time.perf_counter()
s = socket.create_connection(("127.0.0.1", port))
buf = b""
def reply(multi):
    global buf
    end = b"\r\n.\r\n" if multi else b"\r\n"
    while True:
        if multi:
            i = buf.find(end) if buf.startswith(b"+OK") else buf.find(b"\r\n")
        else:
            i = buf.find(end)
        if i >= 0:
            if not buf.startswith(b"+OK"):
                sys.exit(f"server said: {buf[:200]!r}")
            n = i + len(end)
            out, buf = buf[:n], buf[n:]
            return out
        chunk = s.recv(1 << 20)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
reply(False)
s.sendall(b"USER bench\r\n"); reply(False)
s.sendall(b"PASS password\r\n"); reply(False)
s.sendall(b"LIST\r\n")
listing = reply(True).split(b"\r\n")[1:-2]
octets = sum(int(l.split()[1]) for l in listing)
got = 0
for i in range(1, len(listing) + 1):
    s.sendall(b"RETR %d\r\n" % i)
    got += len(reply(True))
hwm = hwm_kib()
s.sendall(b"QUIT\r\n"); reply(False)
dt = time.perf_counter() - t0
assert got >= octets, (got, octets)
print(f"{len(listing)} {octets} {dt:.3f} {hwm}")
EOF
}

run() { # name port pidcmd
  for pass in cold warm; do
    read -r n octets secs hwm < <(client "$2" "$3")
    mbs=$($PY -c "print(f'{$octets/1e6/$secs:.1f}')")
    printf '%-8s %-5s %6d msgs %9d octets %7.3f s %7s MB/s  peak RSS %6d KiB\n' \
      "$1" "$pass" "$n" "$octets" "$secs" "$mbs" "$hwm"
    echo "$1 $pass $secs $hwm $octets" >>"$B/results"
  done
}
run mpopd "$MPORT" "echo $MPID"
run dovecot "$DPORT" "pgrep -P $DPID -x pop3"
$PY - "$B/results" <<'EOF'
import sys
r = {}
for l in open(sys.argv[1]):
    name, p, secs, hwm, octets = l.split()
    r[(name, p)] = (float(secs), int(hwm), int(octets))
for p in ("cold", "warm"):
    m, d = r[("mpopd", p)], r[("dovecot", p)]
    print(f"ratio {p}: dovecot/mpopd time {d[0]/m[0]:.2f}x (>1: mpopd faster), "
          f"peak RSS mpopd/dovecot {m[1]/max(d[1],1):.2f}, "
          f"LIST octets {'equal' if m[2] == d[2] else 'DIFFER'}")
EOF
