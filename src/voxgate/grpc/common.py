"""What both gRPC services share: voxgate errors as gRPC statuses (with
voxgate's code and request id in the trailing metadata), the caller's
address, and the caller itself, found by the same rules as on HTTP.

=====================================================  ======================
voxgate error                                          gRPC status
=====================================================  ======================
no request payload set; any other 400/413/415/422      INVALID_ARGUMENT
voice_not_found, model_not_found, not_found            NOT_FOUND
401 / 403                                              UNAUTHENTICATED /
                                                       PERMISSION_DENIED
engine_overloaded (503, queue full), 429               RESOURCE_EXHAUSTED
engine_unavailable (503), upstream_error (502)         UNAVAILABLE
engine_timeout (504)                                   DEADLINE_EXCEEDED
engine_failed, internal_error, any unexpected failure  INTERNAL
=====================================================  ======================
"""

from __future__ import annotations

import grpc

from voxgate import errors
from voxgate.errors import VoxgateError
from voxgate.serving.auth import Authenticator
from voxgate.serving.limits import RequestLimits
from voxgate.serving.principal import Principal, anonymous

ERROR_CODE_KEY = "voxgate-error-code"
REQUEST_ID_KEY = "voxgate-request-id"

_BY_CODE: dict[str, grpc.StatusCode] = {
    errors.VOICE_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    errors.MODEL_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    errors.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    errors.ENGINE_OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ENGINE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    errors.UPSTREAM_ERROR: grpc.StatusCode.UNAVAILABLE,
    errors.ENGINE_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
}
_BY_STATUS: dict[int, grpc.StatusCode] = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(error: VoxgateError) -> grpc.StatusCode:
    """The gRPC status for a voxgate error (the table in the module docstring)."""
    if error.code in _BY_CODE:
        return _BY_CODE[error.code]
    if error.status in _BY_STATUS:
        return _BY_STATUS[error.status]
    if 400 <= error.status < 500:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def details(error: VoxgateError) -> str:
    text = f"{error.code}: {error.message}"
    return f"{text} ({error.hint})" if error.hint else text


def trailing_metadata(error: VoxgateError, request_id: str) -> tuple[tuple[str, str], ...]:
    """voxgate's code, the request id and, when there is one, Retry-After."""
    trailing = [(ERROR_CODE_KEY, error.code), (REQUEST_ID_KEY, request_id)]
    if error.retry_after is not None:
        trailing.append(("retry-after", str(max(1, round(error.retry_after)))))
    return tuple(trailing)


def peer_host(peer: str) -> str:
    """The address in a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return rest


def authorization(context: grpc.aio.ServicerContext) -> str | None:
    """The ``authorization`` metadata (where gRPC clients put the bearer)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


async def caller(
    context: grpc.aio.ServicerContext,
    authenticator: Authenticator | None,
    limits: RequestLimits | None,
) -> Principal:
    """Who calls (anonymous when authentication is off), then the per-minute
    limits: the rules of HTTP's middleware."""
    client = peer_host(context.peer() or "")
    who = anonymous(client)
    if authenticator is not None:
        who = await authenticator.authenticate(authorization(context), client)
    if limits is not None:
        await limits.check(who)
    return who
