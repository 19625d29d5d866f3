"""What every remote engine shares: timeouts, retries, health, pooling.

A remote engine speaks to a server voxgate does not run (CosyVoice's own
FastAPI, gRPC or Gradio server, Triton, any OpenAI-compatible server). Each
subclass only translates one segment into one upstream call
(:meth:`RemoteEngine._call`) and says how to probe the server
(:meth:`RemoteEngine._probe`); this module decides what happens around it:

* **timeouts**: ``connect_timeout_s`` to reach the server, ``read_timeout_s``
  between two pieces of its answer;
* **retries before the first byte only**: an upstream call that fails before
  any audio arrived is retried ``retries`` times with exponential backoff and
  jitter (connection refused, timeouts, 5xx, 429). Once audio has arrived,
  a failure ends the stream: retrying then would splice or repeat speech.
  A 4xx other than 429 is the upstream's verdict on the request and is not
  retried;
* **clean errors**: a server that is down gives ``engine_unavailable`` (503),
  one that is too slow ``engine_timeout`` (504), one that answers with an
  error or breaks its stream ``upstream_error`` (502); each names the URL;
* **health**: a probe at start and every ``health_interval_s``, shown in
  ``GET /v1/engines`` and ``/readyz``;
* **pooled connections**: one client per engine, ``concurrency`` connections.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import email.utils
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from voxgate.audio.pcm import Samples
from voxgate.diagnostics import Check, fail, ok
from voxgate.engines.base import AudioChunk, Engine, EngineRequest
from voxgate.errors import EngineError, EngineTimeout, EngineUnavailable, UpstreamError
from voxgate.text.split import Segment

log = logging.getLogger(__name__)

FailureKind = Literal["unavailable", "timeout", "protocol", "rejected"]


class RemoteFailure(Exception):
    """One failed upstream call, classified for the retry decision."""

    def __init__(
        self,
        message: str,
        *,
        kind: FailureKind,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RemoteOptions:
    url: str
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 30.0
    retries: int = 2
    backoff_s: float = 0.2
    backoff_max_s: float = 2.0
    # The longest Retry-After waited out before a retry; a longer one goes to
    # the caller (who may prefer another server) instead of holding the request.
    max_retry_wait_s: float = 5.0
    concurrency: int = 4
    health_interval_s: float = 15.0

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("a remote engine needs a url")
        if self.retries < 0 or self.concurrency < 1:
            raise ValueError("retries must be >= 0 and concurrency >= 1")

    @classmethod
    def take(cls, options: dict[str, Any]) -> RemoteOptions:
        """The shared options out of an engine's option dict (removing them)."""
        names = [f for f in cls.__dataclass_fields__ if f in options]
        return cls(**{name: options.pop(name) for name in names})

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the ``attempt``-th retry (1-based)."""
        ceiling = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout_s,
            read=self.read_timeout_s,
            write=self.read_timeout_s,
            pool=self.connect_timeout_s,
        )

    def httpx_limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )


@dataclass(slots=True)
class Health:
    ok: bool | None = None  # None: not probed yet
    error: str | None = None
    checked_at: float | None = None  # unix time
    latency_ms: float | None = None
    failures: int = 0  # consecutive

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error,
            "checked_at": self.checked_at,
            "latency_ms": self.latency_ms,
            "consecutive_failures": self.failures,
        }


def classify_httpx(exc: httpx.HTTPError) -> RemoteFailure:
    """A transport error from httpx as a retry decision."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return RemoteFailure(f"cannot connect: {exc!r}", kind="unavailable", retryable=True)
    if isinstance(exc, httpx.TimeoutException):
        return RemoteFailure(f"no answer in time: {exc!r}", kind="timeout", retryable=True)
    return RemoteFailure(f"connection broken: {exc!r}", kind="protocol", retryable=True)


def retry_after_s(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds: a number (decimals tolerated) or an HTTP date;
    ``retry-after-ms`` (OpenAI's) when present."""
    ms = headers.get("retry-after-ms", "")
    with contextlib.suppress(ValueError):
        if ms:
            return max(0.0, float(ms) / 1000)
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def classify_status(status: int, body: str, headers: httpx.Headers | None = None) -> RemoteFailure:
    """An HTTP error status from upstream as a retry decision."""
    snippet = " ".join(body.split())[:300]
    retry_after = retry_after_s(headers) if headers is not None else None
    # 501 (not implemented) and 505 never change on a retry.
    if status == 429 or (status >= 500 and status not in (501, 505)):
        return RemoteFailure(
            f"HTTP {status}: {snippet}", kind="protocol", retryable=True, retry_after=retry_after
        )
    return RemoteFailure(f"HTTP {status}: {snippet}", kind="rejected", retryable=False)


class PooledHttp:
    """The httpx client of an engine that speaks HTTP: one connection pool of
    ``concurrency`` connections, the engine's timeouts, created on start."""

    def __init__(
        self,
        options: RemoteOptions,
        *,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
    ) -> None:
        self._options = options
        self._headers = dict(headers or {})
        self._follow_redirects = follow_redirects
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self._options.url.rstrip("/"),
                headers=self._headers,
                timeout=self._options.httpx_timeout(),
                limits=self._options.httpx_limits(),
                follow_redirects=self._follow_redirects,
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("the engine is not started")
        return self._client


class RemoteEngine(Engine):
    """Base for engines that call a server; see the module docstring.

    An engine that speaks HTTP sets ``self.http`` (a :class:`PooledHttp`); it
    is opened and closed with the engine."""

    probe_name = "server"  # what the health probe checks, for messages

    def __init__(self, name: str, options: RemoteOptions) -> None:
        super().__init__(name)
        self.options = options
        self.health = Health()
        self.http: PooledHttp | None = None
        self._health_task: asyncio.Task[None] | None = None

    # -- what subclasses provide -------------------------------------------

    @abc.abstractmethod
    def _call(self, request: EngineRequest, segment: Segment) -> AsyncIterator[Samples]:
        """One upstream call for one segment: float32 samples at the engine's
        rate. Raise :class:`RemoteFailure` for anything that went wrong."""

    @abc.abstractmethod
    async def _probe(self) -> None:
        """Raise if the server is not able to serve."""

    @property
    def http_client(self) -> httpx.AsyncClient:
        if self.http is None:
            raise RuntimeError(f"engine {self.name} does not speak HTTP")
        return self.http.client

    async def _open(self) -> None:
        """Create clients and channels (called by :meth:`start`)."""
        if self.http is not None:
            await self.http.open()

    async def _aclose(self) -> None:
        """Close clients and channels (called by :meth:`close`)."""
        if self.http is not None:
            await self.http.close()

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        await self._open()
        await self.check_health()
        if not self.health.ok:
            log.warning(
                "engine %s: %s at %s is not healthy yet (%s); requests will be tried "
                "anyway, and health is probed every %g s",
                self.name,
                self.probe_name,
                self.options.url,
                self.health.error,
                self.options.health_interval_s,
            )
        self._health_task = asyncio.create_task(self._health_loop(), name=f"{self.name}-health")
        self._ready = True

    async def close(self) -> None:
        self._ready = False
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
            self._health_task = None
        await self._aclose()

    async def check_health(self) -> Health:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(
                self._probe(), self.options.connect_timeout_s + self.options.read_timeout_s
            )
        except Exception as exc:  # any failure of the probe is "unhealthy"
            self.health.ok = False
            self.health.error = str(exc) or repr(exc)
            self.health.failures += 1
        else:
            self.health.ok = True
            self.health.error = None
            self.health.failures = 0
        self.health.checked_at = time.time()
        self.health.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return self.health

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.health_interval_s)
            was = self.health.ok
            await self.check_health()
            if was != self.health.ok:
                log.log(
                    logging.INFO if self.health.ok else logging.WARNING,
                    "engine %s: %s at %s is %s%s",
                    self.name,
                    self.probe_name,
                    self.options.url,
                    "healthy" if self.health.ok else "unhealthy",
                    f" ({self.health.error})" if self.health.error else "",
                )

    async def diagnose(self) -> list[Check]:
        try:
            await self._open()
            health = await self.check_health()
        except Exception as exc:  # the client itself cannot be made (a missing package)
            fix = "Install the engine's extra (docs/engines.md)."
            return [fail(self.probe_name, f"cannot create a client: {exc}", fix)]
        finally:
            await self._aclose()
        if health.ok:
            return [ok(self.probe_name, f"{self.options.url} answers ({health.latency_ms} ms)")]
        return [
            fail(
                self.probe_name,
                f"{self.options.url} does not answer: {health.error}",
                "Start the server, or fix the engine's url option (and firewalls between).",
            )
        ]

    @property
    def healthy(self) -> bool | None:
        return self.health.ok

    def describe(self) -> dict[str, Any]:
        return {"url": self.options.url, "health": self.health.to_dict()}

    # -- synthesis -----------------------------------------------------------

    async def _synthesize(self, request: EngineRequest) -> AsyncIterator[AudioChunk]:
        for segment in request.segments:
            async for samples in self._with_retries(
                functools.partial(self._call, request, segment)
            ):
                yield AudioChunk(samples, segment.index)

    async def _with_retries(
        self, call: Callable[[], AsyncIterator[Samples]]
    ) -> AsyncIterator[Samples]:
        """Run an upstream call, retrying it only until its first audio arrived."""
        attempt = 0
        while True:
            received = False
            try:
                async for samples in call():
                    if samples.size:
                        received = True
                    yield samples
                return
            except RemoteFailure as failure:
                attempt += 1
                # An upstream asking for more patience than our backoff allows is
                # not waited for here: the caller gets its Retry-After instead.
                too_long = (failure.retry_after or 0.0) > self.options.max_retry_wait_s
                if received or not failure.retryable or too_long or attempt > self.options.retries:
                    raise self._engine_error(failure, attempt, received) from None
                delay = max(self.options.backoff(attempt), failure.retry_after or 0.0)
                log.info(
                    "engine %s: attempt %d failed before any audio (%s); retrying in %.2f s",
                    self.name,
                    attempt,
                    failure,
                    delay,
                )
                await asyncio.sleep(delay)

    def _engine_error(self, failure: RemoteFailure, attempts: int, received: bool) -> EngineError:
        url = self.options.url
        tried = f" after {attempts} attempt{'s' if attempts > 1 else ''}"
        if received and failure.kind == "timeout":
            # What the pipeline's watchdog says of a local engine that stalls.
            return EngineTimeout(
                f"{self.probe_name} at {url} stalled mid-stream: {failure}",
                hint="The stream was cut; retry the request. The remote server is "
                "overloaded or stuck.",
                retry_after=5,
            )
        if received:
            return UpstreamError(
                f"{self.probe_name} at {url} failed mid-stream: {failure}",
                hint="The stream was cut; retry the request. Check the remote server's logs.",
            )
        if failure.kind == "unavailable":
            return EngineUnavailable(
                f"{self.probe_name} at {url} is not reachable{tried}: {failure}",
                hint="Start the remote server or fix the engine's url; GET /v1/engines shows "
                "its health.",
                retry_after=5,
            )
        if failure.kind == "timeout":
            return EngineTimeout(
                f"{self.probe_name} at {url} did not answer in time{tried}: {failure}",
                hint="The remote server is overloaded or stuck; retry later.",
                retry_after=5,
            )
        return UpstreamError(
            f"{self.probe_name} at {url} answered with an error{tried}: {failure}",
            hint="Check the request against the remote server's model, and its logs.",
            retry_after=failure.retry_after,
        )


@dataclass(slots=True)
class PcmReassembler:
    """Cuts a byte stream of int16 samples at sample boundaries: HTTP chunks
    and gRPC messages may split a sample in two."""

    _rest: bytes = field(default=b"")

    def feed(self, data: bytes) -> bytes:
        data = self._rest + data
        cut = len(data) - len(data) % 2
        self._rest = data[cut:]
        return data[:cut]

    def leftover(self) -> int:
        return len(self._rest)
