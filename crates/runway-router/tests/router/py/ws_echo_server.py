"""A standard WebSocket echo server (the `websockets` package) on 127.0.0.1: prints
"port N" once listening, echoes every message, and runs until killed. The router must
hand it upgrades it accepts, from HTTP/1.1 and from HTTP/2 (RFC 8441) clients alike."""

import asyncio

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main():
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        print("port", port, flush=True)
        await asyncio.Future()


asyncio.run(main())
