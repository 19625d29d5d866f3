"""Prometheus metrics: per-request facts recorded once when a request ends,
live state read from the components at scrape time (obs/live.py).

Each app gets its own registry, never prometheus-client's global one, so that
several apps in one process (tests, an embedding service) do not collide and
``/metrics`` shows only this gateway.

Labels are bounded by construction: ``route`` is the route template (ids never
appear; unmatched paths are ``other``), ``method`` is one of the HTTP methods
or ``other``, ``engine`` and ``code`` come from configuration and the error
catalogue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from voxgate.obs.live import LiveState
from voxgate.obs.observer import FinishedRequest

if TYPE_CHECKING:
    from starlette.datastructures import State

    from voxgate.pipeline import Pipeline

_SUB_SECOND = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75)
# Time to first audio: 10 ms (a cache hit, a fast GPU) to 15 s (an overloaded one).
TTFA_BUCKETS = (*_SUB_SECOND[1:], 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0)
# Whole requests: health checks in milliseconds to long syntheses in minutes.
DURATION_BUCKETS = (*_SUB_SECOND, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# Real-time factor: below 1 keeps up with playback; GPUs reach 0.05.
RTF_BUCKETS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)
# Admission wait: zero for most requests; batch work may wait minutes.
QUEUE_BUCKETS = (0.001, *_SUB_SECOND, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNKNOWN_ERROR = "unknown"  # an error status whose responder noted no code


class Metrics:
    """The app's registry and the request observer that feeds it."""

    def __init__(self, pipeline: Pipeline, app_state: State) -> None:
        # ``_created`` series double the series count and no dashboard reads
        # them; the switch is process-wide, and the process is the server.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.http_in_flight = 0
        r = self.registry
        self._requests = Counter(
            "voxgate_requests_total",
            "HTTP requests by route template, method, status and engine (empty: none ran).",
            ["route", "method", "status", "engine"],
            registry=r,
        )
        self._errors = Counter(
            "voxgate_errors_total",
            "Error responses and streams failed midway, by error code (docs/errors.md).",
            ["code"],
            registry=r,
        )
        self._duration = Histogram(
            "voxgate_request_duration_seconds",
            "Request arrival to response complete.",
            ["engine", "route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._ttfa = Histogram(
            "voxgate_time_to_first_audio_seconds",
            "Pipeline start to the first encoded audio, admission wait included.",
            ["engine", "route"],
            buckets=TTFA_BUCKETS,
            registry=r,
        )
        self._rtf = Histogram(
            "voxgate_real_time_factor",
            "Seconds of synthesis (from the admission slot to the end) per second of audio.",
            ["engine"],
            buckets=RTF_BUCKETS,
            registry=r,
        )
        self._queue_wait = Histogram(
            "voxgate_queue_wait_seconds",
            "Wait for an admission slot, of admitted syntheses (not cache hits).",
            ["engine", "priority"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self._characters = Counter(
            "voxgate_characters_total",
            "Characters of text of admitted syntheses and cache hits (after normalization).",
            ["engine"],
            registry=r,
        )
        self._audio = Counter(
            "voxgate_audio_seconds_total",
            "Seconds of audio produced or served from the cache.",
            ["engine"],
            registry=r,
        )
        r.register(LiveState(pipeline, app_state, self))
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    # RequestObserver
    def request_started(self) -> None:
        self.http_in_flight += 1

    def request_finished(self, request: FinishedRequest) -> None:
        self.http_in_flight -= 1
        fields = request.fields
        engine = str(fields.get("engine") or "")
        route = request.route
        method = request.method if request.method in _METHODS else "other"
        self._requests.labels(route, method, str(request.status), engine).inc()
        self._duration.labels(engine, route).observe(request.duration_s)
        code = fields.get("error")
        if code or request.status >= 400:
            self._errors.labels(str(code or UNKNOWN_ERROR)).inc()
        usage = request.usage
        if usage is None:
            return
        audio_s = usage.audio_seconds
        self._characters.labels(engine).inc(usage.characters)
        self._audio.labels(engine).inc(audio_s)
        if usage.first_audio_s is not None:
            self._ttfa.labels(engine, route).observe(usage.first_audio_s)
        if fields.get("cache") == "hit":
            return  # served from the cache: no slot taken, no engine run
        self._queue_wait.labels(engine, usage.priority.name.lower()).observe(usage.queued_s)
        total = usage.total_s
        if (  # real-time factor only where an engine ran to the end
            total is not None
            and usage.engine_ttfc_s is not None
            and audio_s > 0
            and fields.get("outcome") == "completed"
        ):
            since = usage.admitted_s if usage.admitted_s is not None else usage.queued_s
            self._rtf.labels(engine).observe(max(0.0, total - since) / audio_s)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (Prometheus text by
        default, OpenMetrics when its Accept header says so)."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type
