"""A minimal HTTP/1.1 client for load generation.

Why not httpx: the load generator runs on the same machine as the server it
measures, and at 64 streams x 50 chunks a second a general-purpose client
spends more CPU parsing chunks than the gateway spends producing them, which
shows up as false latency.

Why not a client of its own: the gateway's worker hop already has one lean
HTTP/1.1 client (:mod:`voxgate.worker.http1`: keep-alive connections,
Content-Length or chunked bodies, each chunk handed over as it arrives), so
this module only adapts it to what the benchmark wants: JSON in and out, a
single overall timeout, and a :class:`ProtocolError` named as bench reports
have always named a broken answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from voxgate.worker import http1 as lean


class ProtocolError(Exception):
    """The server broke the HTTP framing (for example, a truncated chunked body)."""


class Response:
    """A response whose head has been read. Read its body to the end (its
    connection is then kept for the next request) or close it."""

    __slots__ = ("_inner", "headers", "status")

    def __init__(self, inner: lean.Response) -> None:
        self._inner = inner
        self.status = inner.status
        self.headers = inner.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._inner.chunks():
                yield piece
        except lean.BrokenResponse as exc:
            raise ProtocolError(str(exc)) from exc

    async def read(self) -> bytes:
        return b"".join([c async for c in self.chunks()])

    def close(self) -> None:
        """Drop the connection unless the body was read to the end (then it
        is already back in the pool, or closed if the server asked)."""
        self._inner.close()


class Client:
    """Keep-alive connections to one server, one request at a time per connection."""

    def __init__(self, base_url: str, timeout_s: float = 120.0) -> None:
        # The callers bound whole requests by ``timeout_s``; the pool's own
        # limits (connecting, and between two pieces of a response) get the
        # same, so they never cut a request the caller would still wait for.
        self._pool = lean.Http1Pool(base_url, connect_timeout=timeout_s, read_timeout=timeout_s)
        self.timeout_s = timeout_s

    @property
    def _idle(self) -> Sequence[object]:
        """The connections kept alive for the next request (for tests)."""
        return self._pool._idle

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[Response, Response]:
        """Send a request and read the head of its response.

        Returned twice, as (response, connection), for :meth:`release`: the
        response is also the handle that closes its connection."""
        try:
            inner = await self._pool.post(path, json.dumps(body).encode(), "application/json")
        except lean.BrokenResponse as exc:
            raise ProtocolError(str(exc)) from exc
        response = Response(inner)
        return response, response

    def release(self, conn: Response, response: Response) -> None:
        """Return a connection after its response: kept if the body was read
        to the end, else closed."""
        conn.close()

    async def get_json(self, path: str) -> Any:
        try:
            inner = await self._pool.get(path)
        except lean.BrokenResponse as exc:
            raise ProtocolError(str(exc)) from exc
        return json.loads(await Response(inner).read())

    async def aclose(self) -> None:
        await self._pool.aclose()
