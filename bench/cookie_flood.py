#!/usr/bin/env python3
"""Invalid session cookies, flat out: CONNECTIONS keep-alive connections, each sending
`GET PATH` with a forged cookie and reading the answer, for SECONDS. Prints the requests answered.

    bench/cookie_flood.py ADDR [SECONDS] [CONNECTIONS] [PATH]

Run the server with its log going to a file and compare the file's size before and after
(BENCHMARKS.md, "The log under a flood of invalid cookies").
"""
import asyncio
import sys
import time


async def one(host, port, path, until, counts):
    reader, writer = await asyncio.open_connection(host, port)
    n = 0
    while time.monotonic() < until:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
            f"Cookie: livesession=forged-{id(writer)}-{n}\r\n\r\n"
        )
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        n += 1
    counts.append(n)
    writer.close()


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    path = sys.argv[4] if len(sys.argv) > 4 else "/settings"
    until = time.monotonic() + seconds
    counts = []
    await asyncio.gather(
        *(one(host, int(port), path, until, counts) for _ in range(connections))
    )
    total = sum(counts)
    print(f"{total} requests with invalid cookies in {seconds:.0f} s ({total / seconds:.0f}/s)")


asyncio.run(main())
