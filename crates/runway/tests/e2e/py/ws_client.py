"""WebSocket clients for the end-to-end tests, against a deployed service through the
router's HTTPS listener (runway's CA trusted, the service's host name sent as SNI and
Host while connecting to 127.0.0.1).

    ws_client.py CA HOST PORT echo            # Python websockets over HTTP/1.1
    ws_client.py CA HOST PORT echo-h2         # RFC 8441 over HTTP/2: h2 + websockets' frames
    ws_client.py CA HOST PORT hold SECONDS INTERVAL
    ws_client.py CA HOST PORT idle            # seconds until the server side closes

Each mode prints one JSON line and exits 0, or raises.
"""

import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader
from websockets.sync.client import connect


def tls_context(ca, alpn):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(alpn)
    return ctx


def h1_connect(ca, host, port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return connect(
        f"wss://{host}:{port}/ws",
        sock=sock,
        ssl=tls_context(ca, ["http/1.1"]),
        server_hostname=host,
        open_timeout=30,
        # The tests time the server's closing; the client must not close first.
        ping_interval=None,
        close_timeout=5,
    )


def echo(ca, host, port):
    with h1_connect(ca, host, port) as ws:
        for text in ["hello", "x" * 70000]:
            ws.send(text)
            got = ws.recv(timeout=30)
            assert got == text, f"echoed {got[:40]!r}, sent {text[:40]!r}"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=30) == b"\x00\x01binary"
    print(json.dumps({"echoed": 3}))


def hold(ca, host, port, seconds, interval):
    """Sends a message every `interval` seconds for `seconds`, each echoed back."""
    started = time.monotonic()
    sent = 0
    with h1_connect(ca, host, port) as ws:
        while time.monotonic() - started < seconds:
            ws.send(f"tick {sent}")
            got = ws.recv(timeout=30)
            assert got == f"tick {sent}", got
            sent += 1
            time.sleep(interval)
    print(json.dumps({"held": round(time.monotonic() - started, 1), "messages": sent}))


def idle(ca, host, port):
    """Echoes one message, then sends nothing: how long until the connection is closed."""
    with h1_connect(ca, host, port) as ws:
        ws.send("only one")
        assert ws.recv(timeout=30) == "only one"
        started = time.monotonic()
        try:
            got = ws.recv(timeout=600)
            raise AssertionError(f"received {got!r} on an idle connection")
        except Exception as e:  # ConnectionClosed (or a reset) ends the wait
            if isinstance(e, AssertionError):
                raise
            closed = type(e).__name__
    print(json.dumps({"closed_after": round(time.monotonic() - started, 1), "how": closed}))


def echo_h2(ca, host, port):
    """A WebSocket over an HTTP/2 stream (RFC 8441 extended CONNECT)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    tls = tls_context(ca, ["h2"]).wrap_socket(sock, server_hostname=host)
    assert tls.selected_alpn_protocol() == "h2", tls.selected_alpn_protocol()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())

    def events():
        data = tls.recv(65536)
        if not data:
            raise AssertionError("the router closed the connection")
        out = conn.receive_data(data)
        tls.sendall(conn.data_to_send())
        return out

    enabled = False
    while not enabled:
        for e in events():
            if isinstance(e, h2.events.RemoteSettingsChanged):
                setting = e.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                assert setting is not None and setting.new_value == 1, "no RFC 8441 support"
                enabled = True
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "https"),
            (":path", "/ws"),
            (":authority", host),
            ("sec-websocket-version", "13"),
        ],
    )
    tls.sendall(conn.data_to_send())
    status = reset = None
    reader = StreamReader()
    while status is None and reset is None:
        for e in events():
            if isinstance(e, h2.events.ResponseReceived):
                status = dict(e.headers)[b":status"].decode()
            if isinstance(e, h2.events.StreamReset):
                reset = e.error_code
    assert status == "200", f"extended CONNECT answered {status} (stream reset: {reset})"
    def pump():
        """Reads what the router sent, feeding the stream's data to `reader`."""
        for e in events():
            if isinstance(e, h2.events.DataReceived):
                conn.acknowledge_received_data(e.flow_controlled_length, stream)
                reader.feed_data(e.data)
            if isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                raise AssertionError(f"the stream ended: {e}")
        tls.sendall(conn.data_to_send())

    def send(data):
        """Sends within the flow-control window and the frame size."""
        while data:
            size = min(
                conn.local_flow_control_window(stream), conn.max_outbound_frame_size, len(data)
            )
            if size == 0:
                pump()
                continue
            conn.send_data(stream, data[:size])
            tls.sendall(conn.data_to_send())
            data = data[size:]

    def next_frame():
        parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
        while True:
            try:
                next(parser)
            except StopIteration as done:
                return done.value
            pump()

    echoed = []
    for text in ["hello over h2", "y" * 70000]:
        send(Frame(Opcode.TEXT, text.encode()).serialize(mask=True))
        got = next_frame()
        assert got.opcode == Opcode.TEXT and got.data.decode() == text, got
        echoed.append(len(text))
    conn.send_data(stream, Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=True), end_stream=True)
    tls.sendall(conn.data_to_send())
    tls.close()
    print(json.dumps({"echoed_h2": echoed}))


def main():
    ca, host, port, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if mode == "echo":
        echo(ca, host, port)
    elif mode == "echo-h2":
        echo_h2(ca, host, port)
    elif mode == "hold":
        hold(ca, host, port, float(sys.argv[5]), float(sys.argv[6]))
    elif mode == "idle":
        idle(ca, host, port)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
