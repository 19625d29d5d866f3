"""Traces from a real server to a real OTLP/HTTP receiver on loopback: the
exporter's own protobuf requests, decoded with the OTLP message types."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from voxgate.testing import ServerProcess

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


class Collector(ThreadingHTTPServer):
    """Keeps every span posted to it, and the paths they were posted to."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Any] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            self.server.paths.append(self.path)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.server.spans.extend(scope.spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def attributes(span: Any) -> dict[str, Any]:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


def test_requests_are_traced_to_the_collector(tmp_path: Path, collector: Collector) -> None:
    engines = {"sim": {"kind": "simulated", "options": {"first_chunk_ms": 20, "rtf": 0.1}}}
    env = {
        "VOXGATE_ENGINES": json.dumps(engines),
        "VOXGATE_OTEL_ENDPOINT": f"http://127.0.0.1:{collector.server_port}",
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # export within 50 ms, not 5 s
    }
    server = ServerProcess(tmp_path, env).start()
    try:
        r = httpx.post(
            server.url + "/v1/audio/speech",
            json={"input": "Traced from end to end.", "response_format": "wav"},
            headers={"X-Request-ID": "trace-me-1", "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
            timeout=30,
        )
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        names: set[str] = set()
        while time.monotonic() < deadline and len(names) < 5:
            time.sleep(0.05)
            with collector.lock:
                ours = [s for s in collector.spans if s.trace_id.hex() == TRACE_ID]
            names = {s.name for s in ours}
    finally:
        assert server.stop() == 0
    assert names == {
        "POST /v1/audio/speech",
        "prepare",
        "admission.wait",
        "engine",
        "encode.first_chunk",
    }
    assert set(collector.paths) == {"/v1/traces"}
    [root] = [s for s in ours if s.name == "POST /v1/audio/speech"]
    assert root.parent_span_id.hex() == PARENT_ID
    assert attributes(root)["voxgate.request_id"] == "trace-me-1"
    assert attributes(root)["voxgate.engine"] == "sim"
    assert "tracing to http://127.0.0.1" in server.log()
