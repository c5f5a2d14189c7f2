"""Uploads BYTES zero bytes over HTTP/2 with the h2 package and prints the answer:

    h2_upload.py CA HOST PORT PATH BYTES [length]

`length` sends a content-length; without it the body's length is unknown until its
end. A server may answer before the body is whole and then reset the stream with
NO_ERROR (RFC 9113 8.1), which curl 7.88 sometimes reports as an error; this client
reads the answer either way. Prints {"status", "body", "reset"} as JSON.
"""

import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def main():
    ca, host, port, path, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    with_length = len(sys.argv) > 6 and sys.argv[6] == "length"
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=60), server_hostname=host)
    assert tls.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "POST"), (":scheme", "https"), (":path", path), (":authority", host)]
    if with_length:
        headers.append(("content-length", str(size)))
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, headers)
    tls.sendall(conn.data_to_send())
    status, body, reset, ended = None, b"", None, False
    left = size

    def pump():
        nonlocal status, body, reset, ended
        data = tls.recv(65536)
        if not data:
            ended = True
            return
        for e in conn.receive_data(data):
            if isinstance(e, h2.events.ResponseReceived):
                status = int(dict(e.headers)[b":status"])
            elif isinstance(e, h2.events.DataReceived):
                body += e.data
                conn.acknowledge_received_data(e.flow_controlled_length, stream)
            elif isinstance(e, h2.events.StreamEnded):
                ended = True
            elif isinstance(e, h2.events.StreamReset):
                reset, ended = e.error_code, True
        tls.sendall(conn.data_to_send())

    while left > 0 and not ended:
        window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size, left)
        if window == 0:
            pump()
            continue
        left -= window
        conn.send_data(stream, b"\0" * window, end_stream=left == 0)
        tls.sendall(conn.data_to_send())
    while not ended:
        pump()
    print(json.dumps({"status": status, "body": body.decode(errors="replace"), "reset": reset}))


if __name__ == "__main__":
    main()
