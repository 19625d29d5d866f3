"""Typed errors of the voxgate SDK.

Every failure the SDK raises is a :class:`VoxgateError`. Catch the class of
failure you can act on (a 429, a 503, a missing voice) and read ``code``, the
stable string from docs/errors.md, for the detail:

    try:
        client.speech.create(input="Hi", voice="nobody")
    except BadRequestError as e:
        if e.code == "voice_not_found": ...

``status`` is the HTTP status (``None`` when no answer arrived), ``hint`` says
what to do, ``request_id`` is the id to quote when reporting a problem, and
``retry_after`` the seconds the server asked to wait (429/503).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "IncompleteStreamError",
    "InternalServerError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
    "VoxgateError",
    "WaitTimeoutError",
]


class VoxgateError(Exception):
    """Base class of every error the SDK raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        hint: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.hint = hint
        self.param = param
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None or self.code:
            parts.insert(0, f"[{self.status or '-'} {self.code or '-'}]")
        if self.hint:
            parts.append(f"(hint: {self.hint})")
        if self.request_id:
            parts.append(f"[request {self.request_id}]")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, {self.message!r})"
        )


class APIConnectionError(VoxgateError):
    """No (complete) answer: the connection failed, was refused or broke."""


class APITimeoutError(APIConnectionError):
    """The server did not answer (or send the next bytes) within the timeout."""


class IncompleteStreamError(APIConnectionError):
    """A stream ended before its end marker, after audio was delivered to the
    caller: the audio received is a prefix of the whole. Never retried by the
    SDK (the caller already has part of the audio)."""


class WaitTimeoutError(VoxgateError, TimeoutError):
    """``jobs.wait`` gave up before the job ended (the job goes on)."""


class APIStatusError(VoxgateError):
    """The server answered with an error status (or a WebSocket error event)."""


class BadRequestError(APIStatusError):
    """400: the request is wrong (``voice_not_found``, ``text_empty``, ``prompt_*``...)."""


class AuthenticationError(APIStatusError):
    """401: no credential, or one the server does not accept."""


class PermissionDeniedError(APIStatusError):
    """403: valid credentials, not allowed here (admin routes)."""


class NotFoundError(APIStatusError):
    """404: no such job, voice, model or route (another tenant's resources too)."""


class ConflictError(APIStatusError):
    """409: the resource is in the wrong state (``job_not_finished``...)."""


class RequestTooLargeError(APIStatusError):
    """413: the body exceeds the server's size limit."""


class UnprocessableEntityError(APIStatusError):
    """422: understood, but impossible (``instruct_unsupported``)."""


class RateLimitError(APIStatusError):
    """429: ``rate_limited`` or ``quota_exceeded``; ``retry_after`` says when."""


class InternalServerError(APIStatusError):
    """5xx other than 503: the engine or the server failed."""


class ServiceUnavailableError(APIStatusError):
    """503: the engine is not ready, drained, or its circuit is open."""


class OverloadedError(ServiceUnavailableError):
    """503 ``engine_overloaded``: every slot busy and the queue full."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_class(status: int | None, code: str | None) -> type[APIStatusError]:
    if code == "engine_overloaded":
        return OverloadedError
    if status is None:
        return APIStatusError
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return InternalServerError
    if 400 <= status < 500:
        return BadRequestError if status in (405, 415) else APIStatusError
    return APIStatusError


def status_of_code(code: str | None) -> int | None:
    """The HTTP status the server gives an error code (for WebSocket error
    events, which carry a code and no status)."""
    if not code:
        return None
    from voxgate.errors import CODES  # dependency-free: the server's code registry

    found = CODES.get(code)
    return found.status if found else None


def from_body(
    status: int | None,
    body: Any,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
    fallback_message: str = "",
) -> APIStatusError:
    """An error from voxgate's ``{"error": {"code", "message", "hint"}}``
    (or from anything else a proxy in between may have answered)."""
    error: Mapping[str, Any] = {}
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            error = inner
    code = _str(error.get("code"))
    message = _str(error.get("message")) or fallback_message or f"HTTP {status}"
    cls = error_class(status, code)
    return cls(
        message,
        status=status,
        code=code,
        hint=_str(error.get("hint")),
        param=_str(error.get("param")),
        request_id=request_id,
        retry_after=retry_after,
        body=body,
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
