"""Spans built from a finished request (obs/tracing.py), checked with the
OpenTelemetry SDK's in-memory exporter: no collector, no network."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from voxgate.obs.observer import FinishedRequest, trace_context
from voxgate.obs.tracing import Tracing, build_tracing, traces_url
from voxgate.pipeline import Usage
from voxgate.serving.admission import Priority

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def traced() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider), exporter
    provider.shutdown()


def finished(usage: Usage | None, *, status: int = 200, **fields: Any) -> FinishedRequest:
    return FinishedRequest(
        route="/v1/audio/speech",
        method="POST",
        status=status,
        started=usage.started_at - 0.01 if usage else time.perf_counter() - 0.5,
        duration_s=1.6,
        fields={"request_id": "rid-1", **fields},
        trace_context={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
        usage=usage,
    )


def seconds(span: ReadableSpan) -> float:
    assert span.start_time is not None
    assert span.end_time is not None
    return (span.end_time - span.start_time) / 1e9


def offset(span: ReadableSpan, root: ReadableSpan) -> float:
    assert span.start_time is not None
    assert root.start_time is not None
    return (span.start_time - root.start_time) / 1e9


def test_a_synthesis_becomes_a_request_span_with_its_steps(
    traced: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = traced
    usage = Usage(
        characters=12,
        samples=48000,
        sample_rate=24000,
        started_at=time.perf_counter() - 2.0,
        queued_s=0.3,
        admitted_s=0.35,
        engine_ttfc_s=0.2,
        first_audio_s=0.6,
        total_s=1.5,
        priority=Priority.BATCH,
    )
    tracing.request_finished(
        finished(usage, engine="sim", tenant="acme", outcome="completed", audio_s=2.0)
    )
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {
        "POST /v1/audio/speech",
        "prepare",
        "admission.wait",
        "engine",
        "encode.first_chunk",
    }
    root = spans["POST /v1/audio/speech"]
    assert root.attributes is not None
    assert root.attributes["voxgate.request_id"] == "rid-1"
    assert root.attributes["voxgate.tenant"] == "acme"
    assert root.attributes["http.route"] == "/v1/audio/speech"
    assert root.attributes["http.response.status_code"] == 200
    # part of the caller's trace (W3C traceparent)
    assert root.context is not None
    assert root.parent is not None
    assert root.context.trace_id == int(TRACE_ID, 16)
    assert root.parent.span_id == int(PARENT_ID, 16)
    assert root.status.status_code is StatusCode.UNSET

    def parent(name: str) -> str:
        span = spans[name]
        assert span.parent is not None
        [found] = [s.name for s in spans.values() if s.context.span_id == span.parent.span_id]
        return found

    assert parent("prepare") == parent("engine") == parent("encode.first_chunk") == root.name
    assert parent("admission.wait") == "prepare"
    assert spans["admission.wait"].attributes == {"voxgate.priority": "batch"}

    # Placed in time from the usage: prepare begins 10 ms into the request...
    assert seconds(root) == pytest.approx(1.6, abs=1e-3)
    assert offset(spans["prepare"], root) == pytest.approx(0.01, abs=1e-3)
    assert seconds(spans["prepare"]) == pytest.approx(0.35, abs=1e-3)
    # ...the wait is its last 300 ms, the engine runs from the slot to the end
    assert offset(spans["admission.wait"], root) == pytest.approx(0.06, abs=1e-3)
    assert seconds(spans["admission.wait"]) == pytest.approx(0.3, abs=1e-3)
    assert offset(spans["engine"], root) == pytest.approx(0.36, abs=1e-3)
    assert seconds(spans["engine"]) == pytest.approx(1.15, abs=1e-3)
    [event] = spans["engine"].events
    assert event.name == "first_chunk"
    # first chunk at 0.55 s into the pipeline, first encoded audio at 0.6 s
    assert offset(spans["encode.first_chunk"], root) == pytest.approx(0.56, abs=1e-3)
    assert seconds(spans["encode.first_chunk"]) == pytest.approx(0.05, abs=1e-3)


def test_a_request_without_synthesis_is_one_span(
    traced: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = traced
    tracing.request_finished(finished(None, status=503, error="overloaded"))
    [span] = exporter.get_finished_spans()
    assert span.name == "POST /v1/audio/speech"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "overloaded"
    assert "voxgate.engine" not in span.attributes  # None values are left out


def test_a_stream_failed_midway_is_an_error_span(
    traced: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = traced
    usage = Usage(characters=3, started_at=time.perf_counter() - 1, admitted_s=0.1)
    tracing.request_finished(finished(usage, outcome="failed", error="engine_error"))
    root = next(s for s in exporter.get_finished_spans() if s.name.startswith("POST"))
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "engine_error"


def test_without_the_sdk_tracing_warns_once_and_stays_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # import fails
    with caplog.at_level(logging.INFO, logger="voxgate.obs"):
        assert build_tracing("http://127.0.0.1:4318") is None
        assert build_tracing(None) is None
        assert build_tracing("") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "voxgate[otel]" in warnings[0].getMessage()


def test_endpoint_is_a_base_url_or_the_traces_url() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://x.example/otlp/v1/traces") == "https://x.example/otlp/v1/traces"


def test_observers_get_the_trace_context_and_no_other_header() -> None:
    headers = {
        "authorization": "Bearer vg_secret",
        "cookie": "s=1",
        "traceparent": "00-x",
        "baggage": "k=v",
    }
    assert trace_context(headers) == {"traceparent": "00-x", "baggage": "k=v"}
