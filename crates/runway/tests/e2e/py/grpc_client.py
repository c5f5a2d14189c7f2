"""A grpcio client of the echo service in tests/e2e/apps/grpc-echo, through the router's
HTTPS listener (runway's CA trusted; the service's host name as SNI and :authority while
connecting to 127.0.0.1).

    grpc_client.py CA HOST PORT calls        # every kind of call, trailers, an error
    grpc_client.py CA HOST PORT deadline     # grpc-timeout reaches the app and is kept
    grpc_client.py CA HOST PORT status [SLOW_SECONDS]
                                             # one call's status (no deadline)

Each mode prints one JSON line and exits 0, or raises.
"""

import json
import sys
import time

import grpc


def channel(ca, host, port):
    with open(ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    return grpc.secure_channel(
        f"127.0.0.1:{port}",
        creds,
        options=[
            ("grpc.ssl_target_name_override", host),
            ("grpc.default_authority", host),
        ],
    )


def method(ch, kind, name):
    return getattr(ch, kind)(f"/echo.Echo/{name}")


def calls(ch):
    out = {}
    reply, call = method(ch, "unary_unary", "Unary").with_call(b"hi", timeout=30)
    assert reply == b"echo:hi", reply
    out["unary"] = reply.decode()
    out["trailer"] = dict(call.trailing_metadata()).get("x-echo-trailer")
    try:
        method(ch, "unary_unary", "Unary")(b"fail", timeout=30)
        raise AssertionError("the failing call succeeded")
    except grpc.RpcError as e:
        out["error"] = [e.code().name, e.details()]
    items = [m.decode() for m in method(ch, "unary_stream", "ServerStream")(b"200", timeout=30)]
    assert items == [f"item {i}" for i in range(200)], items[:3]
    out["server_stream"] = len(items)
    big = [bytes([i % 256]) * 10000 for i in range(100)]
    out["client_stream"] = method(ch, "stream_unary", "ClientStream")(iter(big), timeout=30).decode()
    replies = [r for r in method(ch, "stream_stream", "Bidi")(iter([b"a", b"b", b"c"]), timeout=30)]
    assert replies == [b"bidi:a", b"bidi:b", b"bidi:c"], replies
    out["bidi"] = len(replies)
    return out


def deadline(ch):
    slow = method(ch, "unary_unary", "Slow")
    # The deadline the client gives (grpc-timeout) is what the app sees.
    seen = float(slow(b"0", timeout=30).decode())
    started = time.monotonic()
    try:
        slow(b"10", timeout=1.5)
        raise AssertionError("a 10 s call within a 1.5 s deadline succeeded")
    except grpc.RpcError as e:
        code = e.code().name
    return {"app_saw_remaining": seen, "expired": code, "after": round(time.monotonic() - started, 1)}


def status(ch, slow_seconds):
    started = time.monotonic()
    try:
        if slow_seconds is None:
            method(ch, "unary_unary", "Unary")(b"ping")
        else:
            method(ch, "unary_unary", "Slow")(slow_seconds.encode())
        code, details = "OK", ""
    except grpc.RpcError as e:
        code, details = e.code().name, e.details()
    return {"code": code, "details": details, "after": round(time.monotonic() - started, 1)}


def main():
    ca, host, port, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with channel(ca, host, port) as ch:
        if mode == "calls":
            out = calls(ch)
        elif mode == "deadline":
            out = deadline(ch)
        elif mode == "status":
            out = status(ch, sys.argv[5] if len(sys.argv) > 5 else None)
        else:
            raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
