"""HTTP/2 (h2c, prior knowledge) scenarios against the router, frame by frame, with the
`h2` package: what a real client sends, exactly, where the router's tests need control
over frames that higher-level clients do not give.

    h2_client.py body ADDR HOST PATH SIZE...       POST without Content-Length, one DATA
                                                   frame per SIZE (the last ends the
                                                   stream); exit 0 if /echo returns it
    h2_client.py websocket ADDR HOST PATH N [PAUSE]  RFC 8441 WebSocket: N text messages
                                                   echoed, PAUSE seconds apart
    h2_client.py stall ADDR HOST PATH N SECONDS    N POSTs whose bodies never come; prints
                                                   "opened", then each status as it comes
                                                   (for SECONDS at most), then "done"
    h2_client.py idle ADDR HOST SECONDS            one GET, then idle while answering PINGs;
                                                   exit 0 if the router closes the
                                                   connection within SECONDS
    h2_client.py get ADDR AUTHORITY PATH [NAME VALUE]...  one GET with these extra
                                                   headers; prints the status and body
    h2_client.py grpc ADDR AUTHORITY PATH [NAME VALUE]...  one gRPC call (one message,
                                                   "ping") with these extra headers;
                                                   prints its headers, trailers, messages
                                                   and seconds taken as JSON
"""

import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


class Closed(Exception):
    pass


class Client:
    def __init__(self, addr, timeout=10.0, validate=True):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding="utf-8",
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.flush()
        self.responses = {}
        self.settings_seen = False
        self.pings = 0
        self.goaway = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self):
        """Reads once and handles what arrived; raises Closed at the end of the stream."""
        data = self.sock.recv(65536)
        if not data:
            raise Closed()
        if self.goaway:
            # After GOAWAY the h2 package takes nothing more (a server may still send a
            # PING to time the shutdown): read on to the end of the connection.
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            # Frames after a GOAWAY in the same read: the GOAWAY closed the connection
            # (this client never sends one), the rest is not taken.
            if self.conn.state_machine.state != h2.connection.ConnectionState.CLOSED:
                raise
            self.goaway = True
            return
        for event in events:
            self.handle(event)
        self.flush()

    def handle(self, event):
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_seen = True
        elif isinstance(event, h2.events.ResponseReceived):
            self.response(event.stream_id)["headers"] = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            self.response(event.stream_id)["body"] += event.data
            self.conn.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
        elif isinstance(event, h2.events.TrailersReceived):
            self.response(event.stream_id)["trailers"] = dict(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            self.response(event.stream_id)["ended"] = True
        elif isinstance(event, h2.events.StreamReset):
            self.response(event.stream_id)["reset"] = event.error_code
        elif isinstance(event, h2.events.PingReceived):
            self.pings += 1
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = True

    def response(self, stream_id):
        return self.responses.setdefault(
            stream_id, {"headers": None, "body": b"", "trailers": None}
        )

    def idle_for(self, seconds):
        """Sends nothing for `seconds`, still answering what comes (PINGs)."""
        end = time.time() + seconds
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0.1)
        while time.time() < end:
            try:
                self.pump()
            except socket.timeout:
                pass
        self.sock.settimeout(timeout)

    def wait_settings(self):
        while not self.settings_seen:
            self.pump()

    def request(self, method, authority, path, extra=(), end_stream=True):
        stream_id = self.conn.get_next_available_stream_id()
        headers = [
            (":method", method),
            (":scheme", "http"),
            (":authority", authority),
            (":path", path),
        ]
        headers.extend(extra)
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        self.flush()
        return stream_id

    def finished(self, stream_id):
        r = self.responses.get(stream_id)
        return r is not None and (r.get("ended") or "reset" in r)

    def wait(self, stream_id):
        while not self.finished(stream_id):
            self.pump()
        return self.responses[stream_id]


def pattern(n, seed):
    return bytes((i * 31 + seed) % 251 for i in range(n))


def body(addr, host, path, *sizes):
    c = Client(addr)
    c.wait_settings()
    stream_id = c.request("POST", host, path, end_stream=False)
    sent = b""
    sizes = [int(s) for s in sizes]
    for i, size in enumerate(sizes):
        chunk = pattern(size, i)
        sent += chunk
        c.conn.send_data(stream_id, chunk, end_stream=(i == len(sizes) - 1))
        c.flush()
    r = c.wait(stream_id)
    status = r["headers"].get(":status") if r["headers"] else None
    print("status", status, "sent", len(sent), "received", len(r["body"]))
    if status != "200" or r["body"] != sent:
        print("the instance did not get the body that was sent")
        sys.exit(1)


def ws_frame(opcode, payload):
    """A masked client frame (RFC 6455)."""
    mask = b"\x11\x22\x33\x44"
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_parse(data):
    """Unmasked server frames in `data`: (opcode, payload) pairs and the rest."""
    frames = []
    while len(data) >= 2:
        opcode, n = data[0] & 0x0F, data[1] & 0x7F
        at = 2
        if n == 126:
            if len(data) < 4:
                break
            n, at = int.from_bytes(data[2:4], "big"), 4
        if len(data) < at + n:
            break
        frames.append((opcode, data[at : at + n]))
        data = data[at + n :]
    return frames, data


def websocket(addr, host, path, count, pause="0"):
    c = Client(addr)
    c.wait_settings()
    if not c.conn.remote_settings.enable_connect_protocol:
        print("the router does not allow extended CONNECT")
        sys.exit(1)
    stream_id = c.request(
        "CONNECT",
        host,
        path,
        extra=[(":protocol", "websocket"), ("sec-websocket-version", "13")],
        end_stream=False,
    )
    while c.responses.get(stream_id, {}).get("headers") is None:
        if c.finished(stream_id):
            break
        c.pump()
    r = c.responses[stream_id]
    status = (r["headers"] or {}).get(":status")
    if status != "200":
        print("extended CONNECT answered", status, r["body"][:300])
        sys.exit(1)
    buffered = b""
    for i in range(int(count)):
        if i > 0:
            c.idle_for(float(pause))
        message = f"over h2 {i}".encode()
        c.conn.send_data(stream_id, ws_frame(0x1, message))
        c.flush()
        while True:
            frames, rest = ws_parse(r["body"])
            if frames:
                break
            if c.finished(stream_id):
                print("the stream ended before the echo")
                sys.exit(1)
            c.pump()
        r["body"] = rest
        opcode, payload = frames[0]
        if opcode != 0x1 or payload != message:
            print("unexpected frame", opcode, payload)
            sys.exit(1)
    c.conn.send_data(stream_id, ws_frame(0x8, b"\x03\xe8"), end_stream=True)
    c.flush()
    print("echoed", count)


def stall(addr, host, path, n, seconds):
    c = Client(addr, timeout=float(seconds) + 5)
    c.wait_settings()
    streams = [
        c.request("POST", host, path, extra=[("content-length", "10")], end_stream=False)
        for _ in range(int(n))
    ]
    print("opened", len(streams), flush=True)
    end = time.time() + float(seconds)
    reported = set()
    c.sock.settimeout(0.2)
    while time.time() < end and len(reported) < len(streams):
        try:
            c.pump()
        except socket.timeout:
            pass
        for s in streams:
            r = c.responses.get(s)
            if s not in reported and r is not None and (r["headers"] or "reset" in r):
                reported.add(s)
                status = (r["headers"] or {}).get(":status", "reset")
                print("status", status, flush=True)
    print("done", flush=True)


def idle(addr, host, seconds):
    c = Client(addr, timeout=float(seconds) + 5)
    c.wait_settings()
    r = c.wait(c.request("GET", host, "/"))
    print("first request", r["headers"].get(":status"), flush=True)
    start = time.time()
    c.sock.settimeout(0.5)
    while time.time() - start < float(seconds):
        try:
            c.pump()
        except socket.timeout:
            continue
        except (Closed, ConnectionResetError):
            print(
                f"closed after {time.time() - start:.1f} s, pings {c.pings}, goaway {c.goaway}"
            )
            return
    print(f"still open after {seconds} s, pings {c.pings}")
    sys.exit(1)


def get(addr, authority, path, *extra):
    c = Client(addr, validate=False)
    c.wait_settings()
    pairs = list(zip(extra[::2], extra[1::2]))
    r = c.wait(c.request("GET", authority, path, extra=pairs))
    print((r["headers"] or {}).get(":status"))
    print(r["body"].decode("utf-8", "replace"))


def grpc_messages(data):
    """How many whole gRPC messages `data` holds."""
    n = 0
    while len(data) >= 5:
        size = int.from_bytes(data[1:5], "big")
        if len(data) < 5 + size:
            break
        data = data[5 + size :]
        n += 1
    return n


def grpc_call(addr, authority, path, *extra):
    c = Client(addr, timeout=30)
    c.wait_settings()
    started = time.time()
    headers = [("content-type", "application/grpc"), ("te", "trailers")]
    headers.extend(zip(extra[::2], extra[1::2]))
    stream_id = c.request("POST", authority, path, extra=headers, end_stream=False)
    c.conn.send_data(stream_id, b"\x00\x00\x00\x00\x04ping", end_stream=True)
    c.flush()
    r = c.wait(stream_id)
    print(
        json.dumps(
            {
                "headers": r["headers"],
                "trailers": r["trailers"],
                "messages": grpc_messages(r["body"]),
                "seconds": round(time.time() - started, 2),
                "reset": r.get("reset"),
            }
        )
    )


if __name__ == "__main__":
    scenario, args = sys.argv[1], sys.argv[2:]
    scenarios = {
        "body": body,
        "websocket": websocket,
        "stall": stall,
        "idle": idle,
        "get": get,
        "grpc": grpc_call,
    }
    scenarios[scenario](*args)
