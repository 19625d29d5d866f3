"""Bad input gets a clear 4xx with a stable code and a hint; the server keeps serving."""

from __future__ import annotations

import httpx
import pytest

from voxgate.testing import ServerProcess

SPEECH = "/v1/audio/speech"
TTS = "/v1/tts"

JSON_CASES = [
    # (route, body, status, code)
    (SPEECH, {"input": ""}, 400, "text_empty"),
    (SPEECH, {"input": "   \n\t "}, 400, "text_empty"),
    (SPEECH, {"input": "。。。！"}, 400, "text_empty"),
    (SPEECH, {"input": "x" * 4097}, 400, "text_too_long"),
    (SPEECH, {"input": "hi", "voice": "no-such-voice"}, 400, "voice_not_found"),
    (SPEECH, {"input": "hi", "voice": {"id": "no-such-voice"}}, 400, "voice_not_found"),
    (SPEECH, {"input": "hi", "response_format": "ogg"}, 400, "format_unsupported"),
    (SPEECH, {"input": "hi", "speed": 0.1}, 400, "speed_out_of_range"),
    (SPEECH, {"input": "hi", "speed": 4.5}, 400, "speed_out_of_range"),
    (SPEECH, {"input": "hi", "speed": "fast"}, 400, "invalid_request"),
    (SPEECH, {"voice": "alloy"}, 400, "missing_field"),
    (SPEECH, {"input": 42}, 400, "invalid_request"),
    (SPEECH, {"input": "hi", "model": "whisper-9"}, 404, "model_not_found"),
    (SPEECH, {"input": "hi", "stream_format": "websocket"}, 400, "invalid_request"),
    (TTS, {"text": "hi", "mode": "zero_shot"}, 400, "prompt_required"),
    (TTS, {"text": "hi", "mode": "telepathy"}, 400, "mode_unsupported"),
    (TTS, {"text": "hi", "mode": "instruct"}, 400, "instruct_required"),
    (
        TTS,
        {"text": "hi", "mode": "instruct", "instruct": "like a pirate"},
        422,
        "instruct_unsupported",
    ),
    (TTS, {"text": "hi", "format": "opus", "sample_rate": 22050}, 400, "sample_rate_unsupported"),
    (TTS, {"text": "hi", "sample_rate": 4000}, 400, "sample_rate_unsupported"),
    (TTS, {"text": "hi", "pitch": 13}, 400, "pitch_out_of_range"),
    (TTS, {"text": "hi", "volume": -1}, 400, "volume_out_of_range"),
    (TTS, {"text": "hi", "language": "tlh"}, 400, "language_unsupported"),
    (TTS, {"text": "hi", "engine": "cosyvoice"}, 404, "model_not_found"),
    (TTS, [1, 2, 3], 400, "invalid_json"),
]


@pytest.mark.parametrize(("route", "body", "status", "code"), JSON_CASES)
def test_json_errors(http: httpx.Client, route: str, body: object, status: int, code: str) -> None:
    r = http.post(route, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["hint"], "every error tells the caller what to do"
    assert error["type"]  # the OpenAI shape too
    assert r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("content", "ctype", "status", "code"),
    [
        (b'{"input": "hi"', "application/json", 400, "invalid_json"),
        (b"", "application/json", 400, "invalid_json"),
        (b'{"input": "hi"}', "text/plain", 415, "unsupported_media_type"),
        (b"input=hi", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_body_errors(
    http: httpx.Client, content: bytes, ctype: str, status: int, code: str
) -> None:
    r = http.post(SPEECH, content=content, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_oversized_body_is_refused_before_it_is_buffered(http: httpx.Client) -> None:
    r = http.post(
        SPEECH,
        content=b'{"input": "' + b"a" * 2_000_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


def test_route_errors(http: httpx.Client) -> None:
    r = http.get("/v1/nothing-here")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = http.get(SPEECH)
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")


def test_request_id_is_echoed(http: httpx.Client) -> None:
    r = http.post(SPEECH, json={"input": ""}, headers={"X-Request-ID": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"


def test_server_keeps_serving_after_bad_input(server: ServerProcess, http: httpx.Client) -> None:
    for route, body, _status, _code in JSON_CASES:
        http.post(route, json=body)
    r = http.post(SPEECH, json={"input": "Still serving.", "response_format": "wav"})
    assert r.status_code == 200
    assert r.content[:4] == b"RIFF"
    assert server.alive()


def test_h2c_upgrade_offer_is_ignored_and_the_body_kept(server: ServerProcess) -> None:
    """Every JDK HttpClient offers an HTTP/2 upgrade over cleartext HTTP; the
    request must be served as HTTP/1.1 with its body (uvicorn issue #2722)."""
    import socket

    body = b'{"input": "Upgrade offered.", "response_format": "wav"}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAEAAEAAAAIAAAAAAAMAAAAAAAQBAAAAAAUAAEAAAAYABgAA\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
