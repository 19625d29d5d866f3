"""A minimal HTTP/1.1 client for load generation.

Why not httpx: the load generator runs on the same machine as the server it
measures, and at 64 streams x 50 chunks a second a general-purpose client
spends more CPU parsing chunks than the gateway spends producing them, which
shows up as false latency. This client does only what the benchmark needs:
keep-alive connections, POST with a JSON body, responses with Content-Length
or chunked bodies, each chunk handed over as soon as it arrives.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


class ProtocolError(Exception):
    """The server broke the HTTP framing (for example, a truncated chunked body)."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    _conn: Connection = field(repr=False)
    _chunked: bool = False
    _remaining: int | None = None  # Content-Length left, or None until EOF
    _done: bool = False

    async def chunks(self) -> AsyncIterator[bytes]:
        reader = self._conn.reader
        try:
            if self._chunked:
                while True:
                    line = await reader.readline()
                    if not line.endswith(b"\r\n"):
                        raise ProtocolError("connection closed inside a chunked body")
                    size = int(line.split(b";", 1)[0], 16)
                    if size == 0:
                        while (await reader.readline()) not in (b"\r\n", b""):
                            pass
                        break
                    data = await reader.readexactly(size + 2)
                    yield data[:-2]
            elif self._remaining is not None:
                while self._remaining > 0:
                    data = await reader.read(min(self._remaining, 65536))
                    if not data:
                        raise ProtocolError("connection closed before Content-Length")
                    self._remaining -= len(data)
                    yield data
            else:
                while data := await reader.read(65536):
                    yield data
                self._conn.close()
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError("connection closed inside a chunked body") from exc
        self._done = True

    async def read(self) -> bytes:
        return b"".join([c async for c in self.chunks()])


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


class Client:
    """Keep-alive connections to one server, one request at a time per connection."""

    def __init__(self, base_url: str, timeout_s: float = 120.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// URLs are supported, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self._idle: list[Connection] = []

    async def _connect(self) -> Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and not conn.reader.at_eof():
                return conn
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**20)
        return Connection(reader, writer)

    async def _exchange(self, request: bytes) -> tuple[Response, Connection]:
        """Send a request on a kept-alive connection and read the response head."""
        conn = await self._connect()
        conn.writer.write(request)
        status_line = await conn.reader.readline()
        if not status_line:
            conn.close()
            raise ProtocolError("connection closed before the response")
        headers: dict[str, str] = {}
        while (line := await conn.reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        response = Response(
            int(status_line.split(b" ", 2)[1]),
            headers,
            conn,
            _chunked=chunked,
            _remaining=None if chunked or length is None else int(length),
        )
        return response, conn

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[Response, Connection]:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        return await self._exchange(head + payload)

    def release(self, conn: Connection, response: Response) -> None:
        """Return a connection after its response was read completely."""
        if response._done and not conn.closed and response.headers.get("connection") != "close":
            self._idle.append(conn)
        else:
            conn.close()

    async def get_json(self, path: str) -> Any:
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        response, conn = await self._exchange(request)
        data = await response.read()
        self.release(conn, response)
        return json.loads(data)

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
