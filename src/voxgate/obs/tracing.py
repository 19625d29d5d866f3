"""OpenTelemetry traces, when ``VOXGATE_OTEL_ENDPOINT`` names an OTLP/HTTP
collector and the ``otel`` extra is installed.

The spans of a request are built once it has finished, from the timestamps
the pipeline already keeps (:class:`~voxgate.pipeline.Usage`), not opened and
closed live around each step. That keeps the streaming path untouched (no
span objects or context switches per chunk, no context tokens carried across
the yields of async generators) and makes tracing cost nothing at all when it
is off: the observer is simply not installed. The price is that outgoing
calls (to a remote engine) are not children of these spans.

A request that carries W3C ``traceparent`` becomes part of the caller's trace.
Per request::

    POST /v1/audio/speech         request arrival to response complete
      prepare                     checks, text, voice; ends when the slot is granted
        admission.wait            waiting for an engine slot
      engine                      slot granted to the engine's last chunk
                                  (event first_chunk)
      encode.first_chunk          engine's first chunk to the first encoded audio

Later chunks are encoded while the engine runs, inside the engine span.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from voxgate import __version__
from voxgate.obs.observer import FinishedRequest

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("voxgate.obs")

TRACES_PATH = "/v1/traces"


def traces_url(endpoint: str) -> str:
    """A collector's base URL (``http://collector:4318``, as in
    OTEL_EXPORTER_OTLP_ENDPOINT) or its full traces URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if urlsplit(endpoint).path.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def build_tracing(endpoint: str | None) -> Tracing | None:
    """Tracing to ``endpoint``; None when not configured, or (with one
    warning) when the OpenTelemetry SDK or exporter is not installed."""
    if not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning(
            "VOXGATE_OTEL_ENDPOINT is set but OpenTelemetry is not installed (%s); "
            "tracing is off. Install it with: pip install 'voxgate[otel]'",
            exc,
        )
        return None
    attributes = {"service.version": __version__}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "voxgate"
    # Sampling follows OTEL_TRACES_SAMPLER / _ARG (default: parent-based, all).
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
    log.info("tracing to %s", traces_url(endpoint))
    return Tracing(provider)


class Tracing:
    """The request observer that turns a finished request into spans."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._provider = provider
        self._tracer = provider.get_tracer("voxgate", __version__)
        self._propagate = propagate
        self._in = trace.set_span_in_context
        self._server = SpanKind.SERVER
        self._status, self._error = Status, StatusCode.ERROR

    def request_started(self) -> None:
        pass

    def request_finished(self, request: FinishedRequest) -> None:
        now_ns, now = time.time_ns(), time.perf_counter()

        def at(t: float) -> int:  # perf_counter seconds -> epoch nanoseconds
            return now_ns - int((now - t) * 1e9)

        f = request.fields
        code = f.get("error")
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "http.route": request.route,
            "http.response.status_code": request.status,
            "voxgate.request_id": f.get("request_id"),
            "voxgate.tenant": f.get("tenant"),
            "voxgate.engine": f.get("engine"),
            "voxgate.voice": f.get("voice"),
            "voxgate.characters": f.get("characters"),
            "voxgate.audio_seconds": f.get("audio_s"),
            "voxgate.outcome": f.get("outcome"),
            "error.type": code,
        }
        root = self._tracer.start_span(
            f"{request.method} {request.route}",
            context=self._propagate.extract(request.trace_context),
            kind=self._server,
            start_time=at(request.started),
            attributes={k: v for k, v in attributes.items() if v is not None},
        )
        if request.status >= 500 or f.get("outcome") == "failed":
            root.set_status(self._status(self._error, str(code or request.status)))
        end = request.started + request.duration_s
        usage = request.usage
        if usage is not None:
            parent = self._in(root)
            t0 = usage.started_at
            admitted = t0 + (usage.admitted_s if usage.admitted_s is not None else usage.queued_s)
            done = t0 + usage.total_s if usage.total_s is not None else end
            prepare = self._tracer.start_span("prepare", context=parent, start_time=at(t0))
            wait = self._tracer.start_span(
                "admission.wait",
                context=self._in(prepare),
                start_time=at(admitted - usage.queued_s),
                attributes={"voxgate.priority": usage.priority.name.lower()},
            )
            wait.end(at(admitted))
            prepare.end(at(admitted))
            engine = self._tracer.start_span("engine", context=parent, start_time=at(admitted))
            if usage.engine_ttfc_s is not None:
                first_chunk = admitted + usage.engine_ttfc_s
                engine.add_event("first_chunk", timestamp=at(first_chunk))
                if usage.first_audio_s is not None:
                    encode = self._tracer.start_span(
                        "encode.first_chunk", context=parent, start_time=at(first_chunk)
                    )
                    encode.end(at(max(first_chunk, t0 + usage.first_audio_s)))
            engine.end(at(max(admitted, done)))
        root.end(at(end))

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Flush what is queued; give up after ``timeout_s`` (a collector that
        is down must not hold the server's shutdown)."""
        worker = threading.Thread(target=self._provider.shutdown, daemon=True)
        worker.start()
        worker.join(timeout_s)
