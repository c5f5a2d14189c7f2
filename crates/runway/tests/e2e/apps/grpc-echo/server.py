"""A gRPC echo service (grpcio, messages as raw bytes, so no generated code): unary,
server-streaming, client-streaming and bidirectional calls, an error with a message and
custom trailers, and a slow call that reports the deadline it was given."""

import os
import time
from concurrent import futures

import grpc


def unary(request, context):
    if request == b"fail":
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "asked to fail")
    context.set_trailing_metadata((("x-echo-trailer", "unary"),))
    return b"echo:" + request


def server_stream(request, context):
    for i in range(int(request.decode())):
        yield f"item {i}".encode()


def client_stream(requests, context):
    count = total = 0
    for r in requests:
        count += 1
        total += len(r)
    return f"{count} messages, {total} bytes".encode()


def bidi(requests, context):
    for r in requests:
        yield b"bidi:" + r


def slow(request, context):
    """Sleeps the seconds asked for; answers with the time the deadline left it."""
    remaining = context.time_remaining()
    time.sleep(float(request.decode()))
    return repr(remaining).encode()


handlers = {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
    "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
}

server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", handlers),))
server.add_insecure_port(f"0.0.0.0:{os.environ.get('PORT', '50051')}")
server.start()
print("grpc echo listening", flush=True)
server.wait_for_termination()
