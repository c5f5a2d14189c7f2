"""A gRPC client (grpcio, h2c) through the router: grpc_client.py ADDR AUTHORITY CALL...
runs each CALL on one channel and prints one JSON line per call with its outcome:
{"call", "code", "details", "replies", "trailers"}. CALLs:
  unary  server_stream  client_stream  bidi  fail
  slow:MS             Slow, sleeping MS milliseconds, no deadline
  deadline:MS:SLEEP   Slow, sleeping SLEEP ms, with a deadline of MS ms
  big:N               Unary with an N-byte message
"""

import json
import sys

import grpc


def run(channel, call):
    name, _, arg = call.partition(":")
    replies, trailers, code, details = [], {}, "OK", ""
    try:
        if name == "unary":
            replies = [channel.unary_unary("/test.Echo/Unary")(b"ping", timeout=10)]
        elif name == "big":
            reply = channel.unary_unary("/test.Echo/Unary")(b"x" * int(arg), timeout=10)
            replies = [str(len(reply)).encode()]
        elif name == "server_stream":
            it = channel.unary_stream("/test.Echo/ServerStream")(
                b"tick", timeout=10, metadata=(("x-count", "3"),)
            )
            replies = list(it)
            trailers = dict(it.trailing_metadata() or ())
        elif name == "client_stream":
            replies = [
                channel.stream_unary("/test.Echo/ClientStream")(
                    iter([b"a", b"b", b"c"]), timeout=10
                )
            ]
        elif name == "bidi":
            replies = list(
                channel.stream_stream("/test.Echo/Bidi")(
                    iter([b"one", b"two", b"three"]), timeout=10
                )
            )
        elif name == "fail":
            channel.unary_unary("/test.Echo/Fail")(b"?", timeout=10)
        elif name == "slow":
            replies = [
                channel.unary_unary("/test.Echo/Slow")(
                    b"zz", timeout=30, metadata=(("x-sleep-ms", arg),)
                )
            ]
        elif name == "deadline":
            ms, sleep = arg.split(":")
            replies = [
                channel.unary_unary("/test.Echo/Slow")(
                    b"zz", timeout=int(ms) / 1000, metadata=(("x-sleep-ms", sleep),)
                )
            ]
        else:
            raise SystemExit(f"unknown call {call}")
    except grpc.RpcError as e:
        code, details = e.code().name, e.details() or ""
        trailers = dict(e.trailing_metadata() or ())
    return {
        "call": call,
        "code": code,
        "details": details,
        "replies": [r.decode("utf-8", "replace") for r in replies],
        "trailers": {k: v for k, v in trailers.items() if isinstance(v, str)},
    }


addr, authority, calls = sys.argv[1], sys.argv[2], sys.argv[3:]
with grpc.insecure_channel(addr, options=[("grpc.default_authority", authority)]) as channel:
    for call in calls:
        print(json.dumps(run(channel, call)), flush=True)
