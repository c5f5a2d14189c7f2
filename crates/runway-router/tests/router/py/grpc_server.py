"""A gRPC server (grpcio, h2c) on 127.0.0.1 for the router's tests: prints "port N" once
listening. Service test.Echo, messages as raw bytes:
  Unary          echoes the request
  ServerStream   sends the request back N times (N = metadata x-count), 100 ms apart
  ClientStream   answers all requests joined with "+"
  Bidi           echoes each request as it comes
  Fail           aborts with NOT_FOUND "no such thing" and trailing metadata x-why
  Slow           answers after metadata x-sleep-ms milliseconds (1000 by default)
"""

import time
from concurrent import futures

import grpc


def metadata(context, key, default):
    return dict(context.invocation_metadata()).get(key, default)


def unary(request, context):
    return request


def server_stream(request, context):
    for i in range(int(metadata(context, "x-count", "3"))):
        if i:
            time.sleep(0.1)
        yield request + b" #" + str(i).encode()


def client_stream(requests, context):
    return b"+".join(requests)


def bidi(requests, context):
    for request in requests:
        yield request


def fail(request, context):
    context.set_trailing_metadata((("x-why", "because"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def slow(request, context):
    time.sleep(int(metadata(context, "x-sleep-ms", "1000")) / 1000)
    return request


handlers = {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
    "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
}

server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
server.add_generic_rpc_handlers(
    (grpc.method_handlers_generic_handler("test.Echo", handlers),)
)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print("port", port, flush=True)
server.wait_for_termination()
