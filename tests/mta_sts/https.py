#!/usr/bin/python3
"""HTTPS policy server for the MTA-STS tests (python3 http.server + ssl).

    https.py --listen IP:PORT --cert CERT --key KEY --dir DIR

Answers GET /.well-known/mta-sts.txt for Host H with the file DIR/H.txt (Content-Type
text/plain), 404 when there is none. Appends "HOST PATH" per request to DIR/requests.log.
DIR/ready appears once it listens. SIGTERM stops it.
"""
import argparse
import http.server
import os
import ssl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            name = (self.headers.get("Host") or "").split(":")[0].lower()
            with open(os.path.join(a.dir, "requests.log"), "a") as f:
                f.write(f"{name} {self.path}\n")
            path = os.path.join(a.dir, name + ".txt")
            if self.path != "/.well-known/mta-sts.txt" or "/" in name or not os.path.exists(path):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = open(path, "rb").read()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    open(os.path.join(a.dir, "ready"), "w").close()
    httpd.serve_forever()


if __name__ == "__main__":
    main()
