"""Routes that take JSON and, for file uploads, the same fields as
multipart/form-data.

``/v1/tts`` is a JSON API, but a voice prompt is a file, and base64 in JSON
is a third larger and bounded by the JSON body limit. :class:`JsonOrForm`
routes accept a multipart form too: its fields become the JSON object (file
fields base64-encoded), so one schema validates both and errors read the
same. The body size limit has already been enforced while the form streamed
in (the upload limit, not the JSON one).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

MULTIPART = "multipart/form-data"


async def form_as_json(request: Request) -> Request:
    form = await request.form()
    body: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            item: Any = base64.b64encode(await value.read()).decode("ascii")
        else:
            item = value
        if key in body:  # a repeated field is a list
            previous = body[key]
            body[key] = [*previous, item] if isinstance(previous, list) else [previous, item]
        else:
            body[key] = item
    await form.close()
    raw = json.dumps(body).encode()
    headers = [
        (k, v) for k, v in request.scope["headers"] if k not in (b"content-type", b"content-length")
    ]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    scope = {**request.scope, "headers": headers}
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await request.receive()  # disconnect notifications pass through
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(scope, receive)


class JsonOrForm(APIRoute):
    """An APIRoute whose JSON body may also arrive as multipart/form-data."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            if request.headers.get("content-type", "").startswith(MULTIPART):
                request = await form_as_json(request)
            return await handle(request)

        return route


def multipart_variant(schema_ref: str, files: dict[str, str]) -> dict[str, Any]:
    """``openapi_extra`` documenting the multipart form next to the JSON body."""
    return {
        "requestBody": {
            "content": {
                MULTIPART: {
                    "schema": {
                        "allOf": [{"$ref": f"#/components/schemas/{schema_ref}"}],
                        "properties": {
                            name: {"type": "string", "format": "binary", "description": text}
                            for name, text in files.items()
                        },
                    }
                }
            }
        }
    }
