"""A link with a round trip: forwards 127.0.0.1:LISTEN to HOST:PORT and delays each chunk by half
of ROUND_TRIP_MS in each direction, in order (the test machine has no netem).

    python3 delay_proxy.py LISTEN HOST PORT ROUND_TRIP_MS
"""
import asyncio
import sys
import time

LISTEN, HOST, PORT = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ONE_WAY_S = float(sys.argv[4]) / 2000.0


async def pump(reader, writer):
    chunks = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await chunks.get()
            if data is None:
                writer.close()
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            chunks.put_nowait((time.monotonic() + ONE_WAY_S, data))
    finally:
        chunks.put_nowait((0.0, None))
        await delivering


async def connect(client_reader, client_writer):
    server_reader, server_writer = await asyncio.open_connection(HOST, PORT)
    await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer),
                         return_exceptions=True)


async def main():
    server = await asyncio.start_server(connect, "127.0.0.1", LISTEN)
    async with server:
        await server.serve_forever()


asyncio.run(main())
