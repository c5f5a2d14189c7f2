"""A standard WebSocket client (the `websockets` package) over HTTP/1.1 through the
router: ws_client.py ADDR HOST PATH N sends N messages and checks each echo."""

import asyncio
import sys

from websockets.asyncio.client import connect


async def main(addr, host, path, count):
    host_port = addr.rsplit(":", 1)
    uri = f"ws://{host}{path}"
    async with connect(
        uri, host=host_port[0], port=int(host_port[1]), open_timeout=10
    ) as ws:
        for i in range(int(count)):
            await ws.send(f"over h1 {i}")
            echo = await asyncio.wait_for(ws.recv(), 10)
            if echo != f"over h1 {i}":
                print("unexpected echo", echo)
                sys.exit(1)
    print("echoed", count)


asyncio.run(main(*sys.argv[1:]))
