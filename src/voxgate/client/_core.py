"""The transport-independent half of the SDK: settings, the description of a
request, retry decisions and error mapping. The sync and async clients share
all of it and differ only in how they wait and do I/O."""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from voxgate import __version__
from voxgate.client.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    from_body,
)

log = logging.getLogger("voxgate.client")

USER_AGENT = f"voxgate-python/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
RETRY_STATUSES = frozenset({429, 503})  # refused before any work: safe for every request
RETRY_STATUSES_IDEMPOTENT = frozenset({408, 502, 504})  # may have done work

FileInput = bytes | str | os.PathLike[str] | IO[bytes]
"""Raw bytes, a path, or a file opened in binary mode."""


class _NotGiven:
    """Marks an argument left out (``None`` is a value: it clears a field)."""

    _instance: _NotGiven | None = None

    def __new__(cls) -> _NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = _NotGiven()


def normalize_base_url(base_url: str | None) -> str:
    """``http://host:8080``; a trailing ``/v1`` (OpenAI-style) is accepted too."""
    url = (base_url or os.environ.get("VOXGATE_BASE_URL") or "http://127.0.0.1:8080").rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, not {url!r}")
    return url


def make_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is None:
        return httpx.Timeout(None)
    return httpx.Timeout(float(timeout), connect=min(10.0, float(timeout)))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; ``Retry-After`` wins when the server sends it.

    Attempt ``n`` (0-based) waits a random time in ``[b/2, b]`` with
    ``b = min(max_backoff, initial_backoff * 2**n)``. A 429/503 with
    ``Retry-After: s`` waits ``s`` plus up to ``initial_backoff`` of jitter,
    never less than ``s``; when ``s`` exceeds ``max_retry_after`` (a daily
    quota resetting at midnight) the error is raised at once instead.
    """

    max_retries: int = 2
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry ``attempt + 1``, or ``None``: give up."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            return retry_after + random.uniform(0.0, self.initial_backoff)
        ceiling = min(self.max_backoff, self.initial_backoff * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)


@dataclass
class RequestSpec:
    """One HTTP request, described without doing it."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    data: Mapping[str, Any] | None = None  # multipart form fields (with files)
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: httpx.Timeout | None = None
    idempotent: bool = True
    """Safe to send again once it may have reached the server (after a
    timeout, a dropped connection, a 502/504). 429 and 503 are answered before
    any work, so they are retried for every request."""
    retry: bool = True
    ok_statuses: frozenset[int] = frozenset()
    """Error statuses that are answers, not failures (``/readyz``'s 503)."""

    def answers(self, status: int) -> bool:
        """The response is the request's answer (a success, or an error status
        listed in ``ok_statuses``), not a failure to retry or raise."""
        return status < 400 or status in self.ok_statuses

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"headers": self.headers}
        if self.params:
            out["params"] = {k: v for k, v in self.params.items() if v is not None}
        if self.files is not None:
            out["files"] = self.files
            out["data"] = _form(self.data or {})
        elif self.json is not None:
            out["json"] = self.json
        if self.timeout is not None:
            out["timeout"] = self.timeout
        return out


def _form(data: Mapping[str, Any]) -> dict[str, Any]:
    """Multipart fields as strings (lists stay lists: repeated fields)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, list | tuple):
            out[key] = [str(v) for v in value]
        else:
            out[key] = str(value)
    return out


def compact(**fields: Any) -> dict[str, Any]:
    """The fields that were given (``None`` and NOT_GIVEN left out)."""
    return {k: v for k, v in fields.items() if v is not None and v is not NOT_GIVEN}


def read_file(value: FileInput, default_name: str) -> tuple[str, bytes]:
    """(file name, bytes) of an upload. Files are read whole so that a retried
    request sends the same bytes (prompts and job texts are small)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return default_name, bytes(value)
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        return path.name, path.read_bytes()
    name = getattr(value, "name", None)
    data = value.read()
    if not isinstance(data, bytes):
        raise TypeError("open the file in binary mode ('rb')")
    return (Path(name).name if isinstance(name, str) else default_name), data


def parse_retry_after(value: str | None) -> float | None:
    """Seconds, from delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The typed error for an error answer whose body has been read."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = response.text[:500] if response.content else None
    return from_body(
        response.status_code,
        body,
        request_id=response.headers.get("x-request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        fallback_message=f"HTTP {response.status_code} {response.reason_phrase}".strip(),
    )


def retryable_error(spec: RequestSpec, error: APIStatusError) -> bool:
    if not spec.retry or error.status is None:
        return False
    return error.status in RETRY_STATUSES or (
        spec.idempotent and error.status in RETRY_STATUSES_IDEMPOTENT
    )


def connection_error(exc: httpx.TransportError, spec: RequestSpec) -> APIConnectionError:
    where = f"{spec.method} {spec.path}"
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"{where} timed out ({type(exc).__name__})")
    return APIConnectionError(f"{where} failed: {exc or type(exc).__name__}")


def retryable_exception(spec: RequestSpec, exc: httpx.TransportError) -> bool:
    """A request that never left (no connection) may always be sent again; one
    that may have reached the server only when it is idempotent."""
    if not spec.retry:
        return False
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    return spec.idempotent


def log_retry(
    spec: RequestSpec, attempt: int, delay: float, reason: str, retry_after: float | None
) -> None:
    log.info(
        "retrying %s %s in %.2f s (retry %d): %s",
        spec.method,
        spec.path,
        delay,
        attempt + 1,
        reason,
        extra={"retry_delay": delay, "retry_after": retry_after, "retry_attempt": attempt + 1},
    )


def transport_retry(
    policy: RetryPolicy, spec: RequestSpec, attempt: int, exc: httpx.TransportError
) -> tuple[APIConnectionError, float | None]:
    """The typed error for a send that failed without an answer, and the wait
    before retry ``attempt + 1`` (``None``: raise the error now). A retry is
    logged here so that both clients report it alike."""
    error = connection_error(exc, spec)
    delay = policy.delay(attempt) if retryable_exception(spec, exc) else None
    if delay is not None:
        log_retry(spec, attempt, delay, str(error), None)
    return error, delay


def status_retry(
    policy: RetryPolicy, spec: RequestSpec, attempt: int, error: APIStatusError
) -> float | None:
    """The wait before retrying a request answered with ``error`` (``None``:
    raise it now); the server's ``Retry-After`` counts, and a retry is logged."""
    if not retryable_error(spec, error):
        return None
    delay = policy.delay(attempt, error.retry_after)
    if delay is not None:
        log_retry(spec, attempt, delay, str(error), error.retry_after)
    return delay


@dataclass(frozen=True)
class Options:
    """A client's settings, shared by its sync or async transport."""

    base_url: str
    api_key: str | None
    timeout: httpx.Timeout
    policy: RetryPolicy
    headers: Mapping[str, str]

    @classmethod
    def build(
        cls,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        initial_backoff: float,
        max_backoff: float,
        max_retry_after: float,
        default_headers: Mapping[str, str] | None,
    ) -> Options:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        key = api_key if api_key is not None else os.environ.get("VOXGATE_API_KEY")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json, */*"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(default_headers or {})
        return cls(
            base_url=normalize_base_url(base_url),
            api_key=key,
            timeout=make_timeout(timeout),
            policy=RetryPolicy(max_retries, initial_backoff, max_backoff, max_retry_after),
            headers=headers,
        )

    def url(self, path: str) -> str:
        return self.base_url + path

    def request_kwargs(self, spec: RequestSpec) -> dict[str, Any]:
        """``build_request``'s keyword arguments for ``spec``: the request's own
        headers win over the client's (an ``Accept`` for an event stream)."""
        kwargs = spec.kwargs()
        kwargs["headers"] = {**self.headers, **spec.headers}
        return kwargs

    def open_timeout(self) -> float:
        return self.timeout.connect if self.timeout.connect is not None else 10.0
