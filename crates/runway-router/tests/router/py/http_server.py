"""A plain HTTP/1.1 server (Python's http.server) on 127.0.0.1, the kind of app a test
can stop with SIGSTOP: prints "port N", answers every GET with "hello from py"."""

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"hello from py"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # Clients that gave up on a stopped server: nothing to report.
        pass


server = Server(("127.0.0.1", 0), Hello)
print("port", server.server_address[1], flush=True)
server.serve_forever()
