#!/usr/bin/python3
"""Receiving SMTP server for the mrelayd remote-delivery tests (Debian python3-aiosmtpd).

    receiver.py --listen IP:PORT [--listen IP:PORT]... --dir DIR [--cert CERT --key KEY]
                [--rcpt ADDR=REPLY]... [--tempfail-until FILE] [--tempfail-reply REPLY]
                [--greeting-421-until FILE] [--dsn] [--no-ehlo] [--data-delay-ms N]
                [--no-smtputf8]

Stores every message byte-exact as received (after dot-unstuffing, CRLF kept, nothing added) in
DIR/new/<n>, and appends one JSON line per message to DIR/envelopes.jsonl (file, mail_from,
rcpt_tos, mail_options, rcpt_options, helo, tls, session, local address).  DIR/events.jsonl
gets one line per connection ({"event": "connect", "session": n}) and per RCPT ({"event":
"rcpt", "session": n, "address": ..., "reply": ...}), so tests can count sessions and attempts.
Each transaction also logs "mail" (MAIL accepted) and "data-done" (just before the reply to
the message body, which --data-delay-ms delays), so tests can compute how many transactions
were in flight at once.  DIR/ready appears once every socket listens.

Replies: --rcpt ADDR=REPLY answers RCPT TO:<ADDR> with REPLY (e.g. a 550 5.1.1); every other
recipient gets --tempfail-reply (default "451 4.3.0 Try again later") while FILE given with
--tempfail-until does not exist, else 250.  With --greeting-421-until FILE every connection is
greeted with "421 4.3.2 Service not available" and closed while FILE does not exist.  --dsn
advertises DSN (RFC 3461) and accepts RET/ENVID/NOTIFY/ORCPT (recorded in the options lists,
upper-cased by aiosmtpd).  --no-ehlo answers EHLO with 502, so clients must fall back to HELO
(RFC 5321 §4.1.4); after HELO aiosmtpd refuses MAIL/RCPT parameters.  --no-smtputf8 does
not offer SMTPUTF8 (RFC 6531).  With --cert/--key STARTTLS is offered (never required).
SIGTERM/SIGINT stop it.
"""
import argparse
import asyncio
import itertools
import json
import os
import signal
import ssl

from aiosmtpd.smtp import SMTP

SESSIONS = itertools.count(1)


def append(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


class Handler:
    def __init__(self, args):
        self.dir = args.dir
        self.rules = {}
        for r in args.rcpt:
            addr, reply = r.split("=", 1)
            self.rules[addr.lower()] = reply
        self.tempfail_until = args.tempfail_until
        self.tempfail_reply = args.tempfail_reply
        self.greeting_421_until = args.greeting_421_until
        self.dsn = args.dsn
        self.no_ehlo = args.no_ehlo
        self.data_delay_ms = args.data_delay_ms
        self.count = 0

    def event(self, record):
        append(os.path.join(self.dir, "events.jsonl"), record)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.dsn:
            responses.insert(len(responses) - 1, "250-DSN")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rules.get(address.lower())
        if reply is None:
            if self.tempfail_until and not os.path.exists(self.tempfail_until):
                reply = self.tempfail_reply
            else:
                reply = "250 2.1.5 OK"
        self.event({"event": "rcpt", "session": server.number, "address": address, "reply": reply})
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self.event({"event": "mail", "session": server.number})
        return "250 2.1.0 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_delay_ms:
            await asyncio.sleep(self.data_delay_ms / 1000)
        self.count += 1
        name = "%06d" % self.count
        tmp = os.path.join(self.dir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.dir, "new", name))
        append(os.path.join(self.dir, "envelopes.jsonl"), {
            "file": "new/" + name,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "rcpt_options": envelope.rcpt_options,
            "helo": session.host_name,
            "tls": session.ssl is not None,
            "session": server.number,
            "size": len(envelope.original_content),
        })
        self.event({"event": "data-done", "session": server.number})
        return "250 2.0.0 OK stored as " + name


class CountingSMTP(SMTP):
    """Numbers each TCP connection (a STARTTLS upgrade is the same connection)."""

    def connection_made(self, transport):
        fresh = self.transport is None
        super().connection_made(transport)
        if fresh:
            self.number = next(SESSIONS)
            self.event_handler.event({"event": "connect", "session": self.number})

    async def smtp_EHLO(self, hostname):
        if self.event_handler.no_ehlo:
            self.event_handler.event({"event": "ehlo-refused", "session": self.number})
            await self.push("502 5.5.2 Error: command not recognized")
            return
        await super().smtp_EHLO(hostname)

    def _getparams(self, params):
        result = super()._getparams(params)
        if result is not None and self.event_handler.dsn:
            for k in ("RET", "ENVID", "NOTIFY", "ORCPT"):
                result.pop(k, None)
        return result

    async def _handle_client(self):
        until = self.event_handler.greeting_421_until
        if until and not os.path.exists(until):
            await self.push("421 4.3.2 Service not available, closing transmission channel")
            self.transport.close()
            return
        await super()._handle_client()


async def main(args):
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(args.dir, sub), exist_ok=True)
    handler = Handler(args)
    ctx = None
    if args.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
    loop = asyncio.get_running_loop()
    servers = []
    for listen in args.listen:
        host, port = listen.rsplit(":", 1)
        servers.append(await loop.create_server(
            lambda: CountingSMTP(
                handler,
                hostname="receiver.test",
                ident="mailkit-remote-tests receiver",
                tls_context=ctx,
                require_starttls=False,
                enable_SMTPUTF8=not args.no_smtputf8,
                decode_data=False,
            ),
            host,
            int(port),
            reuse_address=True,
        ))
    open(os.path.join(args.dir, "ready"), "w").close()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--listen", action="append", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--rcpt", action="append", default=[])
    p.add_argument("--tempfail-until")
    p.add_argument("--tempfail-reply", default="451 4.3.0 Try again later")
    p.add_argument("--greeting-421-until")
    p.add_argument("--dsn", action="store_true")
    p.add_argument("--no-ehlo", action="store_true")
    p.add_argument("--data-delay-ms", type=int, default=0)
    p.add_argument("--no-smtputf8", action="store_true")
    a = p.parse_args()
    asyncio.run(main(a))
