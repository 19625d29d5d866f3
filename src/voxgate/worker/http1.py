"""A lean HTTP/1.1 client for the worker hop's one hot call.

Why not httpx here: every synthesis through a worker streams dozens of
chunks, and httpx spends about 60 µs of the gateway's CPU per chunk (h11
events, anyio wrappers, the pool's bookkeeping): two milliseconds per
request, on every request. This client does only what
``POST /worker/v1/synthesize`` needs (a request with a Content-Length body;
a response with a chunked or Content-Length body, each piece handed over as
it arrives; keep-alive connections over TCP or a Unix socket) and costs a
fraction of that. It also serves ``info`` and ``health``, polled every
second or two (and kept out of the log, where httpx writes every request);
the rare calls (voices, streamed text) use httpx. The load generator
(:mod:`voxgate.bench.http1`) wraps it too, for the same reason: its CPU per
chunk would otherwise show up as false latency in what it measures.

Failures are :class:`OSError`\\ s and :class:`TimeoutError`\\ s as asyncio
raises them, plus :class:`BrokenResponse` for a cut or malformed answer; the
caller classifies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit


class BrokenResponse(Exception):
    """The connection closed, or the bytes were not HTTP, mid-answer."""


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class Response:
    """A response whose head has been read. Read its body to the end (then
    the connection is kept for the next call) or close it."""

    __slots__ = ("_chunked", "_conn", "_length", "_pool", "_read_timeout", "headers", "status")

    def __init__(
        self,
        pool: Http1Pool,
        conn: _Connection,
        status: int,
        headers: dict[str, str],
        read_timeout: float,
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status = status
        self.headers = headers
        self._read_timeout = read_timeout
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._length = int(length) if length is not None and not self._chunked else None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, at most ``read_timeout`` between two pieces."""
        conn = self._conn
        if conn is None:
            raise BrokenResponse("the response was closed")
        reader = conn.reader
        try:
            if self._chunked:
                while True:
                    async with asyncio.timeout(self._read_timeout):
                        line = await reader.readline()
                        if not line.endswith(b"\r\n"):
                            raise BrokenResponse("connection closed inside a chunked body")
                        size = int(line.split(b";", 1)[0], 16)
                        if size == 0:
                            while (await reader.readline()) not in (b"\r\n", b""):
                                pass
                            break
                        data = await reader.readexactly(size + 2)
                    yield data[:-2]
            elif self._length is not None:
                remaining = self._length
                while remaining > 0:
                    async with asyncio.timeout(self._read_timeout):
                        data = await reader.read(min(remaining, 1 << 16))
                    if not data:
                        raise BrokenResponse("connection closed before Content-Length")
                    remaining -= len(data)
                    yield data
            else:  # until the server closes
                while True:
                    async with asyncio.timeout(self._read_timeout):
                        data = await reader.read(1 << 16)
                    if not data:
                        break
                    yield data
                self.close()
                return
        except asyncio.IncompleteReadError:
            raise BrokenResponse("connection closed inside a chunked body") from None
        except ValueError:
            raise BrokenResponse("a malformed chunk size") from None
        # Read to the end: the connection can serve the next call.
        self._conn = None
        if self.headers.get("connection", "").lower() == "close":
            conn.close()
        else:
            self._pool._release(conn)

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.chunks()])

    def close(self) -> None:
        """Give up on the rest: the connection is closed, which tells the
        server the caller is gone."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Http1Pool:
    """Keep-alive connections to one server (``http://host:port``,
    ``https://host:port`` or a Unix socket path); as many at once as there
    are calls. ``https`` verifies the server with ``tls`` (default: the
    system's trust store)."""

    def __init__(
        self,
        url: str,
        *,
        uds: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        max_idle: int = 64,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if uds is None and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError(f"only http:// or https:// URLs or Unix sockets, got {url!r}")
        self._host = parts.hostname or "worker"
        secure = uds is None and parts.scheme == "https"
        self._port = parts.port or (443 if secure else 80)
        self._tls = (tls or ssl.create_default_context()) if secure else None
        self._uds = uds
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        authority = self._host if uds else f"{self._host}:{self._port}"
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {authority}\r\n{extra}"
        self._max_idle = max_idle
        self._idle: list[_Connection] = []

    async def post(self, path: str, body: bytes, content_type: str) -> Response:
        """Send a request and read the head of its response."""
        head = (
            f"POST {path} HTTP/1.1\r\n{self._head}Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return await self._request(head, body)

    async def get(self, path: str) -> Response:
        return await self._request(f"GET {path} HTTP/1.1\r\n{self._head}\r\n".encode(), b"")

    async def _request(self, head: bytes, body: bytes) -> Response:
        """A kept-alive connection the server closed meanwhile is replaced,
        once: the request never reached it."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.usable:
                conn.close()
                continue
            try:
                return await self._exchange(conn, head, body)
            except (BrokenResponse, ConnectionError):
                conn.close()  # closed by the server while idle: try a new one
                break
        return await self._exchange(await self._connect(), head, body)

    async def _connect(self) -> _Connection:
        async with asyncio.timeout(self._connect_timeout):
            if self._uds is not None:
                reader, writer = await asyncio.open_unix_connection(self._uds, limit=1 << 20)
            else:
                reader, writer = await asyncio.open_connection(
                    self._host, self._port, limit=1 << 20, ssl=self._tls
                )
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, head: bytes, body: bytes) -> Response:
        status_line = b""
        try:
            conn.writer.write(head + body if len(body) < 1 << 16 else head)
            if len(body) >= 1 << 16:
                conn.writer.write(body)
            await conn.writer.drain()
            async with asyncio.timeout(self._read_timeout):
                status_line = await conn.reader.readline()
                if not status_line:
                    raise BrokenResponse("connection closed before the response")
                headers: dict[str, str] = {}
                while (line := await conn.reader.readline()) not in (b"\r\n", b""):
                    key, _, value = line.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
            status = int(status_line.split(b" ", 2)[1])
        except (ValueError, IndexError):
            conn.close()
            raise BrokenResponse(f"not an HTTP response: {status_line[:80]!r}") from None
        except BaseException:
            conn.close()
            raise
        return Response(self, conn, status, headers, self._read_timeout)

    def _release(self, conn: _Connection) -> None:
        if conn.usable and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()
