"""Per-request context as plain ASGI middleware (no buffering, so streaming
and disconnect detection are untouched): a request id, the body size limit,
and one access log line with what the route recorded about the synthesis.
The same end-of-request point feeds metrics and tracing (obs/observer.py)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxgate import errors
from voxgate.api.errors import error_payload
from voxgate.errors import VoxgateError
from voxgate.obs.observer import (
    FinishedRequest,
    RequestObserver,
    notify,
    route_template,
    trace_context,
)

log = logging.getLogger("voxgate.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestTooLarge(VoxgateError):
    default_code = errors.REQUEST_TOO_LARGE


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_upload_bytes: int,
        observers: Sequence[RequestObserver] = (),
        max_job_bytes: int = 0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.max_job_bytes = max_job_bytes
        self.observers = tuple(observers)  # metrics, tracing: told once per request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 0
        sent = 0

        first_byte: float | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            elif message["type"] == "http.response.body":
                if first_byte is None and message.get("body"):
                    first_byte = time.perf_counter()
                sent += len(message.get("body", b""))
            await send(message)

        upload = headers.get("content-type", "").startswith("multipart/form-data")
        limit = self.max_upload_bytes if upload else self.max_body_bytes
        setting = "VOXGATE_MAX_UPLOAD_BYTES" if upload else "VOXGATE_MAX_BODY_BYTES"
        if scope.get("path") == "/v1/jobs" and self.max_job_bytes > limit:
            # a job carries up to a million characters (3 MB of UTF-8 Chinese)
            limit, setting = self.max_job_bytes, "VOXGATE_MAX_JOB_BODY_BYTES"
        declared = headers.get("content-length")
        for observer in self.observers:
            observer.request_started()
        try:
            if declared is not None and declared.isdigit() and int(declared) > limit:
                state.setdefault("log", {})["error"] = errors.REQUEST_TOO_LARGE
                await self._too_large(send_wrapper, limit, setting)
                return
            received = 0

            async def receive_wrapper() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise RequestTooLarge(
                            f"request body exceeds {limit} bytes",
                            hint=f"Send less, or raise {setting}.",
                        )
                return message

            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            duration = time.perf_counter() - started
            route = route_template(scope)
            principal = state.get("principal")
            fields = {
                "request_id": request_id,
                # auth writes the tenant into state["log"]; this is the fallback
                "tenant": getattr(principal, "tenant", None),
                "method": scope.get("method"),
                "route": route,
                "path": scope.get("path"),
                "status": status,
                "duration_ms": round(duration * 1000, 1),
                # request handed to the app -> first body byte handed to the server
                "ttfb_ms": None if first_byte is None else round((first_byte - started) * 1000, 1),
                "bytes": sent,
                "client": (scope.get("client") or ("", 0))[0],
                **state.get("log", {}),
            }
            log.info("request", extra=fields)
            if self.observers:
                notify(
                    self.observers,
                    FinishedRequest(
                        route=route,
                        method=str(scope.get("method", "")),
                        status=status,
                        started=started,
                        duration_s=duration,
                        fields=fields,
                        trace_context=trace_context(headers),
                        usage=state.get("usage"),
                    ),
                )

    @staticmethod
    async def _too_large(send: Send, limit: int, setting: str) -> None:
        body = json.dumps(
            error_payload(
                errors.REQUEST_TOO_LARGE,
                f"request body exceeds {limit} bytes",
                f"Send less, or raise {setting}.",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})
