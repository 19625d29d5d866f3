"""The access log: exactly one JSON line per request, with the documented
fields (docs/operations.md), and nothing secret in the whole server log."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from typing import Any

import httpx

from tests.support.prompts import SENTENCE, encode, speech
from voxgate.testing import ServerProcess

SYNTHESIS_FIELDS = set(
    "request_id tenant route method path status client bytes duration_ms ttfb_ms engine voice "
    "characters format priority outcome ttfa_ms total_ms queue_ms engine_ttfc_ms audio_s".split()
)


def access_lines(
    server: ServerProcess, request_id: str, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """The access log lines of one request (waiting for the line to be written)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(raw) for raw in server.log().splitlines() if f'"{request_id}"' in raw]
        found = [line for line in lines if line.get("logger") == "voxgate.access"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_synthesis_logs_one_line_with_every_field(
    server: ServerProcess, http: httpx.Client
) -> None:
    text = "One line per request."
    r = http.post(
        "/v1/audio/speech",
        json={"input": text, "voice": "nova", "response_format": "mp3"},
        headers={"X-Request-ID": "log-fields-1"},
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "log-fields-1"
    [line] = access_lines(server, "log-fields-1")
    assert set(line) >= SYNTHESIS_FIELDS, SYNTHESIS_FIELDS - set(line)
    assert line["route"] == "/v1/audio/speech"
    assert (line["method"], line["status"], line["outcome"]) == ("POST", 200, "completed")
    assert line["tenant"] == "default"  # anonymous callers belong to the default tenant
    assert (line["engine"], line["format"], line["priority"]) == ("espeak", "mp3", "realtime")
    assert line["characters"] == len(text)
    assert line["bytes"] == len(r.content)
    assert line["client"] == "127.0.0.1"
    assert 0 <= line["queue_ms"] <= line["ttfa_ms"] <= line["total_ms"]
    assert line["audio_s"] > 0.5
    assert "error" not in line


def test_an_error_logs_its_code_and_route_template(
    server: ServerProcess, http: httpx.Client
) -> None:
    r = http.get("/v1/engines/nope-engine", headers={"X-Request-ID": "log-error-1"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")
    [line] = access_lines(server, "log-error-1")
    assert line["route"] == "/v1/engines/{name}"
    assert line["path"] == "/v1/engines/nope-engine"
    assert (line["status"], line["error"]) == (404, "model_not_found")
    assert "engine" not in line  # nothing was synthesized


def test_request_ids_are_generated_when_missing_or_invalid(
    server: ServerProcess, http: httpx.Client
) -> None:
    generated = http.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert len(access_lines(server, generated)) == 1
    replaced = http.get("/healthz", headers={"X-Request-ID": "bad id; with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])
    assert len(access_lines(server, replaced.headers["x-request-id"])) == 1


def test_no_credentials_prompts_or_text_in_the_log(
    server: ServerProcess, http: httpx.Client
) -> None:
    token = "vg_secret_" + secrets.token_hex(16)
    private = "My account number is " + secrets.token_hex(6)
    prompt = base64.b64encode(encode(speech(), 24000, "mp3")).decode()
    r = http.post(
        "/v1/tts",
        json={
            "text": private,
            "reference_audio": prompt,
            "reference_text": SENTENCE,
            "format": "wav",
        },
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "log-secrets-1"},
    )
    assert r.status_code == 200, r.text  # authentication is off on loopback
    [line] = access_lines(server, "log-secrets-1")
    assert line["status"] == r.status_code
    log = server.log()
    assert token not in log
    assert "vg_secret_" not in log
    assert private not in log
    # any 24-character piece of the base64 prompt would mean part of it was logged
    pieces = [prompt[i : i + 24] for i in range(0, len(prompt) - 24, 997)]
    assert pieces
    assert not [p for p in pieces if p in log]
