"""Reads smtp-sink's -c counters ("\\rsess=S quit=Q mesg=M" per update) from stdin.

usage: sinkwatch.py N OUT
  OUT.done   written (atomically) the moment mesg reaches N: the wall-clock time, seconds since
             the epoch, so the bench stops its clock without polling the sink.
  OUT        at end of input (the sink exited): the last counters "sess=S quit=Q mesg=M".
Used by tests/bench/relay.sh; a pipe write of one update is atomic, so every read holds whole
updates.
"""
import os
import re
import sys
import time

n = int(sys.argv[1])
out = sys.argv[2]
done = False
last = b""
counter = re.compile(rb"mesg=(\d+)")
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    records = [r for r in chunk.split(b"\r") if r.strip()]
    if not records:
        continue
    last = records[-1].strip()
    if not done:
        m = counter.search(last)
        if m and int(m.group(1)) >= n:
            now = time.time()
            with open(out + ".done.tmp", "w") as f:
                f.write(f"{now:.6f}\n")
            os.rename(out + ".done.tmp", out + ".done")
            done = True
with open(out, "wb") as f:
    f.write(last + b"\n")
