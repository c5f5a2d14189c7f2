"""Says which expected secrets are set, by a digest of each value, never the value."""

import hashlib
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXPECTED = ["DB_PASSWORD", "API_TOKEN"]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        report = {
            name: hashlib.sha256(os.environ[name].encode()).hexdigest()[:16]
            if name in os.environ
            else None
            for name in EXPECTED
        }
        data = (json.dumps(report) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
