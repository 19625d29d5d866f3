"""Per-minute request limits as plain ASGI middleware (no buffering, so
streaming and disconnect detection are untouched, like api/middleware.py).

It sits inside authentication: the principal auth put in
``scope["state"]["principal"]`` says which limits apply (serving/limits.py,
``RatePolicy``); without one the caller is anonymous and limited by its
address. A refused request gets 429 ``rate_limited`` before the route runs;
an allowed one gets ``X-RateLimit-*`` headers for the tightest limit that
applies. Probes, metrics and the API docs are never limited: a load
balancer must be able to see a gateway that is refusing its callers.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxgate.api import handshake
from voxgate.api.errors import error_response
from voxgate.serving.limits import RateLimited, RequestLimits
from voxgate.serving.principal import Principal, anonymous

UNLIMITED_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/favicon.ico"}
)


def limited(path: str) -> bool:
    # /static/: the playground's files (api/web.py); loading the page must not
    # spend the caller's requests
    return path not in UNLIMITED_PATHS and not path.startswith(("/docs", "/static/"))


def caller(scope: Scope) -> Principal:
    """The principal authentication found, else the anonymous one at the
    peer's address."""
    found = scope.get("state", {}).get("principal")
    if isinstance(found, Principal):
        return found
    client = scope.get("client")
    return anonymous(client[0] if client else "")


class RateLimits:
    def __init__(self, app: ASGIApp, *, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not limited(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            decision = await self.limits.check(caller(scope))
        except RateLimited as refused:
            state: dict[str, Any] = scope.setdefault("state", {})
            state.setdefault("log", {})["error"] = refused.code
            if scope["type"] == "websocket":  # a connection counts as one request
                await handshake.refuse(scope, receive, send, refused)
            else:
                await error_response(refused)(scope, receive, send)
            return
        if decision is None or scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in decision.headers()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
