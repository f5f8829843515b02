#!/usr/bin/python3
"""Parses every message in a Maildir (new/ and cur/) with python's email module and prints one
JSON document: a list with, per message, its top-level headers, content type and report-type,
the MIME types of its parts, the delivery-status fields (per-message and per-recipient, each a
dict of field name -> value) and the returned message or headers.

    dsn.py MAILDIR
"""
import email
import email.policy
import json
import os
import re
import sys


def unfold(v):
    """RFC 5322 §2.2.3: unfolding removes each CRLF that is followed by WSP."""
    return re.sub(r"\r?\n(?=[ \t])", "", str(v))


out = []
root = sys.argv[1]
for sub in ("new", "cur"):
    d = os.path.join(root, sub)
    if not os.path.isdir(d):
        continue
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            raw = f.read()
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        item = {
            "file": os.path.join(sub, name),
            "headers": {k: unfold(v) for k, v in msg.items()},
            "header_count": {k: len(msg.get_all(k, [])) for k in msg.keys()},
            "content_type": msg.get_content_type(),
            "report_type": msg.get_param("report-type"),
            "parts": [],
            "per_message": None,
            "recipients": [],
            "returned": None,
            "text": None,
        }
        if msg.is_multipart():
            for part in msg.get_payload():
                ct = part.get_content_type()
                item["parts"].append(ct)
                if ct == "text/plain" and item["text"] is None:
                    item["text"] = part.get_payload(decode=True).decode("utf-8", "replace")
                elif ct in ("message/delivery-status", "message/global-delivery-status"):
                    blocks = part.get_payload()
                    if ct == "message/global-delivery-status":  # RFC 6533: parsed as one message
                        if isinstance(blocks, list):
                            text = blocks[0].as_string()
                        else:
                            text = part.get_payload(decode=True).decode("utf-8", "replace")
                        blocks = [email.message_from_string(b.strip("\r\n") + "\n")
                                  for b in re.split(r"\r?\n\r?\n", text) if b.strip()]
                    if blocks:
                        item["per_message"] = {k: unfold(v) for k, v in blocks[0].items()}
                        item["recipients"] = [{k: unfold(v) for k, v in b.items()} for b in blocks[1:]]
                elif ct in ("message/rfc822", "message/global"):
                    inner = part.get_payload()
                    if isinstance(inner, str):  # message/global (RFC 6532)
                        inner = email.message_from_bytes(part.get_payload(decode=True))
                    else:
                        inner = inner[0]
                    item["returned"] = {
                        "type": ct,
                        "subject": inner.get("Subject"),
                        "headers": {k: unfold(v) for k, v in inner.items()},
                        "body": inner.get_payload(decode=True).decode("utf-8", "replace")
                        if not inner.is_multipart() else None,
                    }
                elif ct in ("text/rfc822-headers", "message/global-headers"):
                    text = part.get_payload(decode=True).decode("utf-8", "replace")
                    hdrs = email.message_from_string(text)
                    item["returned"] = {
                        "type": ct,
                        "subject": hdrs.get("Subject"),
                        "headers": {k: unfold(v) for k, v in hdrs.items()},
                        "body": None,
                        "raw": text,
                    }
        out.append(item)
print(json.dumps(out))
