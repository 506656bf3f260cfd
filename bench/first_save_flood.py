#!/usr/bin/env python3
"""A flood of first saves from one address: CONNECTIONS keep-alive connections, each round a
`GET /settings` without a cookie (a fresh session and its CSRF token) then `POST /settings` with a
name, for SECONDS. Prints the rounds and how many saves were answered 303 (saved) or 429.

    bench/first_save_flood.py ADDR [SECONDS] [CONNECTIONS]

Count the rows afterwards: `sqlite3 DATA_DIR/livesession.db 'select count(*) from settings'`.
"""
import asyncio
import re
import sys
import time


async def request(reader, writer, text):
    writer.write(text.encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length)
    return head.decode("latin-1"), body.decode("utf-8", "replace")


async def one(host, port, until, counts):
    reader, writer = await asyncio.open_connection(host, port)
    while time.monotonic() < until:
        head, body = await request(reader, writer, f"GET /settings HTTP/1.1\r\nHost: {host}\r\n\r\n")
        cookie = re.search(r"(?i)set-cookie: ([^;\r]+)", head).group(1)
        token = re.search(r'name="_csrf" value="([^"]+)"', body).group(1)
        form = f"_csrf={token}&username=flood&theme=dark"
        head, _ = await request(
            reader,
            writer,
            f"POST /settings HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\n\r\n{form}",
        )
        status = head[9:12]
        counts[status] = counts.get(status, 0) + 1
    writer.close()


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    until = time.monotonic() + seconds
    counts = {}
    await asyncio.gather(*(one(host, int(port), until, counts) for _ in range(connections)))
    print(f"{sum(counts.values())} first saves in {seconds:.0f} s from one address: {counts}")


asyncio.run(main())
