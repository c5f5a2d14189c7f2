"""A tiny web app for runway's quickstart: the standard library only.

GET /         the greeting (from the GREETING environment variable)
GET /healthz  ok
"""

import json
import os
import platform
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = os.environ.get("GREETING", "Hello from runway")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, "text/plain", "ok\n")
        elif self.path == "/":
            self.reply(200, "text/plain", f"{GREETING}\n")
        elif self.path == "/info":
            info = {"python": platform.python_version(), "greeting": GREETING}
            self.reply(200, "application/json", json.dumps(info) + "\n")
        else:
            self.reply(404, "text/plain", "not found\n")

    def reply(self, status, content_type, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"listening on port {port}", flush=True)
    server.serve_forever()
