"""Rendering failures (DESIGN rule 6).

One body for every route: ``{"error": {"code", "message", "hint", "type",
"param"}}``. It is the native shape (code, message, hint) and the OpenAI
shape (message, type, param, code) at once, so the OpenAI SDK raises its
typed exceptions and native clients read a stable ``code`` and a ``hint``.

Request validation failures from FastAPI are mapped onto the same codes a
domain check would raise, so ``"speed": 9`` gives ``speed_out_of_range``
whether pydantic or the pipeline notices it first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from voxgate import errors
from voxgate.errors import CODES, VoxgateError

log = logging.getLogger("voxgate.api")

_OPENAI_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

# (field, pydantic error type) -> code; field alone matches any range error.
_RANGE_TYPES = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_CHOICE_TYPES = {"literal_error", "enum"}
_FIELD_CODES: dict[str, tuple[set[str], str]] = {
    "speed": (_RANGE_TYPES, errors.SPEED_OUT_OF_RANGE),
    "pitch": (_RANGE_TYPES, errors.PITCH_OUT_OF_RANGE),
    "volume": (_RANGE_TYPES, errors.VOLUME_OUT_OF_RANGE),
    "sample_rate": (_RANGE_TYPES, errors.SAMPLE_RATE_UNSUPPORTED),
    "response_format": (_CHOICE_TYPES, errors.FORMAT_UNSUPPORTED),
    "format": (_CHOICE_TYPES, errors.FORMAT_UNSUPPORTED),
    "mode": (_CHOICE_TYPES, errors.MODE_UNSUPPORTED),
}


_TYPE_HINTS = {
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "a list",
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str | None
    type: str
    param: str | None


class ErrorBody(BaseModel):
    """Every error response (docs/errors.md)."""

    error: ErrorDetail


_STATUS_TEXT = {
    400: "Invalid request (see error.code)",
    404: "No such model or resource",
    413: "Body too large",
    415: "Body is not JSON",
    422: "The engine cannot honour the request",
    500: "Engine or server failure",
    503: "Overloaded or not ready (Retry-After)",
    504: "The engine timed out",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors a route can answer with."""
    return {
        status: {"model": ErrorBody, "description": _STATUS_TEXT.get(status, "Error")}
        for status in statuses
    }


SYNTHESIS_ERRORS = error_responses(400, 404, 413, 415, 422, 500, 503, 504)


def error_payload(
    code: str, message: str, hint: str | None = None, param: str | None = None
) -> dict[str, Any]:
    status = CODES[code].status
    return {
        "error": {
            "code": code,
            "message": message,
            "hint": hint,
            "type": _OPENAI_TYPE.get(status, "server_error"),
            "param": param,
        }
    }


def error_response(exc: VoxgateError) -> JSONResponse:
    return JSONResponse(
        error_payload(exc.code, exc.message, exc.hint, exc.param),
        status_code=exc.status,
        headers=exc.headers(),
    )


def _field(loc: Sequence[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) if parts else None


def _is_json(request: Request) -> bool:
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _takes_form(request: Request) -> bool:
    """Whether the matched route reads form fields (the CosyVoice-compatible
    routes) rather than a JSON body."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    body = getattr(dependant, "body_params", None) or []
    return any(isinstance(p.field_info, params.Form) for p in body)


def validation_error(request: Request, exc: RequestValidationError) -> VoxgateError:
    problems = list(exc.errors())
    first: dict[str, Any] = (
        dict(problems[0]) if problems else {"type": "", "loc": (), "msg": "invalid request"}
    )
    kind, loc = first.get("type", ""), tuple(first.get("loc", ()))
    # Form routes (the CosyVoice-compatible ones) report fields, not JSON problems.
    if (
        loc[:1] == ("body",)
        and request.method in ("POST", "PUT", "PATCH")
        and not _takes_form(request)
    ):
        if not _is_json(request) and len(loc) <= 2:
            got = request.headers.get("content-type") or "none"
            return VoxgateError(
                f"expected a JSON body, got Content-Type {got}",
                code=errors.UNSUPPORTED_MEDIA_TYPE,
                hint="Send Content-Type: application/json.",
            )
        if kind == "json_invalid":
            detail = (first.get("ctx") or {}).get("error", "")
            return VoxgateError(
                f"body is not valid JSON: {detail}".rstrip(": "),
                code=errors.INVALID_JSON,
                hint="Check quoting and commas; the body must be one JSON object.",
            )
        if loc == ("body",):
            return VoxgateError(
                "body must be a JSON object" if kind != "missing" else "body is empty",
                code=errors.INVALID_JSON,
                hint='Send a JSON object such as {"input": "Hello", "voice": "alloy"}.',
            )
    field = _field(loc)
    name = field.split(".")[0] if field else ""
    code = errors.INVALID_REQUEST
    if kind == "missing":
        code = errors.MISSING_FIELD
    elif name in _FIELD_CODES and kind in _FIELD_CODES[name][0]:
        code = _FIELD_CODES[name][1]
    ctx = first.get("ctx") or {}
    hint = None
    if "expected" in ctx:
        hint = f"Expected {ctx['expected']}."
    elif kind in _RANGE_TYPES:
        bound = next(iter(ctx.values()), None)
        words = {
            "greater_than": "above",
            "greater_than_equal": "at least",
            "less_than": "below",
            "less_than_equal": "at most",
        }[kind]
        hint = f"{field} must be {words} {bound}."
    elif kind == "missing":
        hint = f"Add the field {field!r}."
    elif kind == "string_too_long" and "max_length" in ctx:
        hint = f"{field} must be at most {ctx['max_length']} characters."
    elif kind == "string_too_short" and "min_length" in ctx:
        hint = f"{field} must be at least {ctx['min_length']} characters."
    elif kind in _TYPE_HINTS and field:
        hint = f"{field} must be {_TYPE_HINTS[kind]}."
    hint = hint or "See the request schema at /docs."
    message = f"{field}: {first.get('msg', 'invalid')}" if field else str(first.get("msg"))
    return VoxgateError(message, code=code, hint=hint, param=field)


def _note(request: Request, code: str) -> None:
    """Put the error code on the request's access log line."""
    request.scope.setdefault("state", {}).setdefault("log", {})["error"] = code


async def _voxgate_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VoxgateError)
    _note(request, exc.code)
    if exc.status >= 500:
        request_id = request.scope.get("state", {}).get("request_id")
        log.warning(
            "request failed: %s: %s",
            exc.code,
            exc.message,
            extra={"request_id": request_id, "error": exc.code},
        )
    return error_response(exc)


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = validation_error(request, exc)
    _note(request, error.code)
    return error_response(error)


async def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err = VoxgateError(
            f"no route {request.method} {request.url.path}",
            code=errors.NOT_FOUND,
            hint="See /docs for the API.",
        )
    elif exc.status_code == 405:
        err = VoxgateError(
            f"{request.method} is not allowed on {request.url.path}",
            code=errors.METHOD_NOT_ALLOWED,
            hint="See /docs for the methods each route accepts.",
        )
    elif exc.status_code == 413:
        err = VoxgateError(str(exc.detail), code=errors.REQUEST_TOO_LARGE)
    else:
        err = VoxgateError(str(exc.detail), code=errors.INVALID_REQUEST)
    _note(request, err.code)
    response = error_response(err)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unhandled_handler(request: Request, exc: Exception) -> JSONResponse:
    _note(request, errors.INTERNAL_ERROR)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        VoxgateError(
            "internal server error",
            code=errors.INTERNAL_ERROR,
            hint="Retry; if it persists, report the X-Request-ID of this response.",
        )
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(VoxgateError, _voxgate_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
