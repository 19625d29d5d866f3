"""Authentication for every HTTP request and WebSocket, as plain ASGI
middleware: the body is neither read nor buffered, so streaming and disconnect
detection are untouched, and a refused request costs no route work.

It sits inside :class:`~voxgate.api.middleware.RequestContext`, so a 401 has
a request id and an access log line like any other answer. The principal it
finds goes to ``scope["state"]["principal"]`` (read by ``api/deps.py``), and
the tenant and key id (never the key) to the access log.

Everything under ``/v1/admin/`` needs an administrator here as well as in its
routes, so an admin route added later cannot be left open by forgetting a
dependency. So does ``/metrics`` when it is protected (``VOXGATE_AUTH_METRICS``):
it shows every tenant's numbers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from voxgate.api import handshake
from voxgate.api.errors import error_payload
from voxgate.errors import VoxgateError
from voxgate.serving.auth import Authenticator, admin_only
from voxgate.serving.principal import Principal, anonymous

log = logging.getLogger("voxgate.auth")

# Probes, the API description, and the root (the playground, or a redirect to
# /docs) stay open.
OPEN_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json"}
)
OPEN_PREFIXES = ("/static/",)  # the playground's files (api/web.py); it has no secrets
ADMIN_PREFIX = "/v1/admin/"
METRICS = "/metrics"  # every tenant's numbers: administrators only, when protected


class Authentication:
    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator | None,
        open_metrics: bool = True,
    ) -> None:
        """``authenticator`` None: authentication is off and every caller is
        the anonymous principal of its address."""
        self.app = app
        self.authenticator = authenticator
        self.open_paths = OPEN_PATHS | ({METRICS} if open_metrics else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        client = (scope.get("client") or ("", 0))[0]
        path: str = scope.get("path", "")
        credential = _authorization(scope)  # a WebSocket's ?api_key= leaves the scope here
        if self.authenticator is None or path in self.open_paths or path.startswith(OPEN_PREFIXES):
            state["principal"] = anonymous(client)
            await self.app(scope, receive, send)
            return
        try:
            who = await self.authenticator.authenticate(credential, client)
            _note(scope, who)
            if (path.startswith(ADMIN_PREFIX) or path == METRICS) and not who.admin:
                raise admin_only(path)
        except VoxgateError as exc:
            await _refuse(scope, receive, send, exc)
            return
        except Exception:  # the database is down, say: answer, do not hang up
            log.exception("authentication failed unexpectedly on %s", path)
            error = VoxgateError(
                "authentication could not be checked",
                hint="Retry; if it persists, report the X-Request-ID of this response.",
            )
            await _refuse(scope, receive, send, error)
            return
        state["principal"] = who
        await self.app(scope, receive, send)


def _authorization(scope: Scope) -> str | None:
    if scope["type"] == "websocket":  # browsers cannot set headers (api/handshake.py)
        return handshake.credential(scope)
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return bytes(value).decode("latin-1")
    return None


def _note(scope: Scope, who: Principal) -> None:
    """The access log line says whose request it was (the key's id, never the key)."""
    fields: dict[str, Any] = scope["state"].setdefault("log", {})
    fields["tenant"] = who.tenant
    fields["auth"] = who.method
    if who.key_id:
        fields["key_id"] = who.key_id
    elif who.method == "jwt":
        fields["subject"] = who.subject


async def _refuse(scope: Scope, receive: Receive, send: Send, error: VoxgateError) -> None:
    scope["state"].setdefault("log", {})["error"] = error.code
    if scope["type"] == "websocket":  # refused during the handshake, with the status
        await handshake.refuse(scope, receive, send, error)
        return
    body = json.dumps(error_payload(error.code, error.message, error.hint)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers().items()),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
