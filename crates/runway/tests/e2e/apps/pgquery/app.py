"""A small app for runway's private-network tests: it queries PostgreSQL with psycopg
(installed from PyPI by its build) and tries TCP connections, and answers with what
happened.

  GET /healthz                    ok
  GET /query?dsn=DSN&sql=SQL      the rows as JSON, or 502 with the driver's error
  GET /tcp?addr=HOST:PORT         "open" (and ": " and what the peer sent first, if
                                  anything within a second), or 502 with the error
"""

import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import psycopg


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/healthz":
            return self.reply(200, "ok")
        if url.path == "/query":
            try:
                with psycopg.connect(query["dsn"][0], connect_timeout=3) as conn:
                    rows = conn.execute(query["sql"][0]).fetchall()
                return self.reply(200, json.dumps(rows, default=str))
            except Exception as e:  # the test reads the driver's error
                return self.reply(502, f"{type(e).__name__}: {e}")
        if url.path == "/tcp":
            host, port = query["addr"][0].rsplit(":", 1)
            try:
                conn = socket.create_connection((host, int(port)), timeout=2)
            except Exception as e:
                return self.reply(502, f"{type(e).__name__}: {e}")
            with conn:
                conn.settimeout(1)
                try:
                    first = conn.recv(200).decode(errors="replace").strip()
                except OSError:
                    first = ""
            return self.reply(200, f"open: {first}" if first else "open")
        return self.reply(404, "not found")

    def log_message(self, format, *args):
        sys.stderr.write("%s\n" % (format % args))


class DualStackServer(ThreadingHTTPServer):
    # "::" takes IPv4 connections too (as ::ffff:a.b.c.d), for the dual-stack tests.
    address_family = socket.AF_INET6


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    DualStackServer(("::", port), Handler).serve_forever()
