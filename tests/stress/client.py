"""A minimal asyncio HTTP/1.1 client (no dependency): one connection per request.

Enough for the stress tests: GET with extra headers, ``Connection: close``,
Content-Length or chunked bodies, and the option to hang up early.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class IncompleteResponse(Exception):
    """The server closed the connection before a whole response arrived."""


def _dechunk(data: bytes) -> bytes:
    body = bytearray()
    while True:
        line, sep, data = data.partition(b"\r\n")
        if not sep:
            raise IncompleteResponse("truncated chunk size")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return bytes(body)
        if len(data) < size + 2:
            raise IncompleteResponse("truncated chunk")
        body += data[:size]
        data = data[size + 2 :]


def parse_response(raw: bytes) -> Response:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise IncompleteResponse(f"no complete head in {len(raw)} bytes")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(rest)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if len(rest) < length:
            raise IncompleteResponse(f"{len(rest)} of {length} body bytes")
        body = rest[:length]
    else:
        body = rest
    return Response(status, headers, body)


def request_bytes(path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def get(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """GET ``path`` from 127.0.0.1:``port``; the whole response, or an exception."""

    async def exchange() -> Response:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request_bytes(path, headers))
            await writer.drain()
            raw = await reader.read()  # Connection: close: until EOF
        finally:
            writer.close()
        return parse_response(raw)

    return await asyncio.wait_for(exchange(), timeout)


async def get_and_hang_up(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    after: float = 0.1,
    read_first: int = 0,
) -> bytes:
    """Send the request, read ``read_first`` bytes (0: none), wait ``after`` s, then hang up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(request_bytes(path, headers))
        await writer.drain()
        while len(received) < read_first:
            chunk = await asyncio.wait_for(reader.read(read_first - len(received)), 10)
            if not chunk:
                break
            received += chunk
        await asyncio.sleep(after)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
    return received
