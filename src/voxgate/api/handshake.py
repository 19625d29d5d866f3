"""WebSocket handshakes: the credential a browser can send, and refusals.

Browsers cannot set headers on a WebSocket, so besides ``Authorization:
Bearer`` a WebSocket may carry its credential as a ``?api_key=`` query
parameter or as a ``bearer.<token>`` subprotocol (``new WebSocket(url,
["voxgate.v1", "bearer." + key])``). The query parameter is removed from the
scope once read, so that no log line (uvicorn's included) ever shows it.

A refused WebSocket (authentication, rate limits) is refused *during the
handshake*, before it is accepted: with the HTTP status and the usual error
body when the server can send one (the ASGI ``websocket.http.response``
extension, which uvicorn has), else with close code 1008, which servers
turn into a bare 403. Clients see a failed handshake with the status
(``websockets.InvalidStatus``, Java's ``WebSocketHandshakeException``).
"""

from __future__ import annotations

import json
import urllib.parse

from starlette.types import Receive, Scope, Send

from voxgate.api.errors import error_payload
from voxgate.errors import VoxgateError

QUERY_KEY = "api_key"
BEARER_PROTOCOL = "bearer."
PROTOCOL = "voxgate.v1"  # the subprotocol to offer next to bearer.<token>


def subprotocols(scope: Scope) -> list[str]:
    return [str(p) for p in scope.get("subprotocols") or ()]


def take_query_credential(scope: Scope) -> str | None:
    """The ``api_key`` query parameter, removed from the scope for good."""
    raw: bytes = scope.get("query_string", b"")
    if QUERY_KEY.encode() not in raw:
        return None
    pairs = urllib.parse.parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    found = next((value for name, value in pairs if name == QUERY_KEY), None)
    rest = [(name, value) for name, value in pairs if name != QUERY_KEY]
    scope["query_string"] = urllib.parse.urlencode(rest).encode("latin-1")
    return found


def credential(scope: Scope) -> str | None:
    """A WebSocket's ``Authorization`` value, from whichever place the
    client could put it: the header, a ``bearer.`` subprotocol, ``api_key``."""
    query = take_query_credential(scope)
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return bytes(value).decode("latin-1")
    for protocol in subprotocols(scope):
        if protocol.startswith(BEARER_PROTOCOL) and len(protocol) > len(BEARER_PROTOCOL):
            return "Bearer " + protocol[len(BEARER_PROTOCOL) :]
    return None if query is None else "Bearer " + query


def chosen_subprotocol(scope: Scope) -> str | None:
    """The subprotocol to accept with. A browser that offered any fails the
    connection unless one is chosen: ``voxgate.v1`` if offered, else the
    ``bearer.`` one (its own credential, echoed on its own connection)."""
    offered = subprotocols(scope)
    if PROTOCOL in offered:
        return PROTOCOL
    return next((p for p in offered if p.startswith(BEARER_PROTOCOL)), None)


async def refuse(scope: Scope, receive: Receive, send: Send, error: VoxgateError) -> None:
    """Refuse a WebSocket before accepting it (see the module docstring)."""
    if (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": error.code})
        return
    body = json.dumps(error_payload(error.code, error.message, error.hint)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers().items()),
    ]
    start = "websocket.http.response.start"
    await send({"type": start, "status": error.status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
