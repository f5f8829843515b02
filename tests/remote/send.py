#!/usr/bin/python3
"""Submits messages over SMTP with python's smtplib, with ESMTP options, in one session.

    send.py PORT FROM RCPT[,RCPT...] MSGFILE [MSGFILE...] [--mail-opt OPT]... [--rcpt-opt OPT]...

Each MSGFILE (CRLF line endings, sent as is, dot-stuffed by smtplib) is one transaction. For
each it prints "QUEUED <reply text>" or "REFUSED <code> <text>" and exits 1 on any refusal.
FROM "<>" is the null sender. --rcpt-opt applies to every recipient.
"""
import argparse
import smtplib
import sys

p = argparse.ArgumentParser()
p.add_argument("port", type=int)
p.add_argument("sender")
p.add_argument("rcpts")
p.add_argument("files", nargs="+")
p.add_argument("--mail-opt", action="append", default=[])
p.add_argument("--rcpt-opt", action="append", default=[])
a = p.parse_args()
sender = "" if a.sender == "<>" else a.sender
s = smtplib.SMTP("127.0.0.1", a.port, timeout=30)
s.ehlo("sender.test")
failed = False
for path in a.files:
    with open(path, "rb") as f:
        msg = f.read()
    code, text = s.mail(sender, a.mail_opt)
    if code != 250:
        print("REFUSED", code, text.decode(errors="replace")); failed = True; s.rset(); continue
    ok = True
    for r in a.rcpts.split(","):
        code, text = s.rcpt(r, a.rcpt_opt)
        if code not in (250, 251):
            print("REFUSED", code, text.decode(errors="replace")); ok = False
    if not ok:
        failed = True; s.rset(); continue
    code, text = s.data(msg)
    if code != 250:
        print("REFUSED", code, text.decode(errors="replace")); failed = True; continue
    print("QUEUED", text.decode(errors="replace"), flush=True)
s.quit()
sys.exit(1 if failed else 0)
