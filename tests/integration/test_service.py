"""What an operator relies on: health, readiness, docs, and one log line per request."""

from __future__ import annotations

import json
import time

import httpx

from voxgate.testing import ServerProcess


def test_health_and_readiness(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "engines": {"espeak": True}}


def test_docs_and_openapi(http: httpx.Client) -> None:
    root = http.get("/", follow_redirects=False)  # the playground (tests/e2e/test_playground.py)
    assert root.status_code == 200
    assert "voxgate playground" in root.text
    assert "swagger" in http.get("/docs").text.lower()
    spec = http.get("/openapi.json").json()
    for path in ("/v1/audio/speech", "/v1/tts", "/v1/models", "/v1/audio/voices", "/v1/engines"):
        assert path in spec["paths"], path


def test_voices_pagination(http: httpx.Client) -> None:
    first = http.get("/v1/audio/voices", params={"limit": 5}).json()
    assert first["object"] == "list"
    assert len(first["data"]) == 5
    assert first["has_more"] is True
    second = http.get("/v1/audio/voices", params={"limit": 5, "after": first["last_id"]}).json()
    assert {v["id"] for v in first["data"]}.isdisjoint(v["id"] for v in second["data"])
    everything = http.get("/v1/audio/voices", params={"limit": 1000}).json()
    assert not everything["has_more"]
    assert any("中文女" in v["aliases"] for v in everything["data"])
    bad = http.get("/v1/audio/voices", params={"after": "nope"})
    assert bad.status_code == 400


def test_one_json_log_line_per_request(server: ServerProcess, http: httpx.Client) -> None:
    r = http.post(
        "/v1/audio/speech",
        json={"input": "Logged request.", "voice": "nova", "response_format": "pcm"},
        headers={"X-Request-ID": "log-check-1"},
    )
    assert r.status_code == 200
    line = None
    deadline = time.monotonic() + 5
    while line is None and time.monotonic() < deadline:
        for raw in server.log().splitlines():
            if '"log-check-1"' in raw:
                line = json.loads(raw)
        time.sleep(0.05)
    assert line is not None, "no access log line for the request"
    assert line["logger"] == "voxgate.access"
    assert line["method"] == "POST"
    assert line["path"] == "/v1/audio/speech"
    assert line["status"] == 200
    assert line["engine"] == "espeak"
    assert line["voice"] == "en-us-f1"
    assert line["characters"] == len("Logged request.")
    assert line["outcome"] == "completed"
    assert line["ttfa_ms"] > 0
    assert line["audio_s"] > 0.5
    assert line["bytes"] == len(r.content)
