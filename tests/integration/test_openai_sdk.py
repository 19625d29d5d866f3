"""The OpenAI speech API, driven by the real ``openai`` SDK over loopback."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import openai
import pytest

from tests.support.audio import decode, expected_decode_rate, priming
from voxgate.testing import ServerProcess

TEXT = "Hello from voxgate. This is the second sentence, and here is a third one."
FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
RATE = 24000  # OpenAI's output rate
FRAME = {"mp3": 576, "aac": 1024, "opus": 960}


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0)


@pytest.fixture
def reference(client: openai.OpenAI) -> np.ndarray:
    """The PCM the other formats were encoded from."""
    pcm = client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm"
    )
    return decode(pcm.content, "pcm").samples


def check_duration(fmt: str, data: bytes, reference: np.ndarray) -> None:
    decoded = decode(data, fmt)
    assert decoded.sample_rate == expected_decode_rate(fmt, RATE)
    # Compare at the output rate; MP3 and AAC (ADTS) decoders emit the encoder's
    # priming before the audio (documented in docs/api.md), nothing else may differ.
    produced = decoded.duration - priming(fmt) / RATE
    expected = len(reference) / RATE
    assert abs(produced - expected) <= 0.050, (fmt, produced, expected)
    assert produced >= expected - 0.002, f"{fmt} lost its tail: {produced} < {expected}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_whole_response_decodes_completely(
    client: openai.OpenAI, reference: np.ndarray, fmt: str
) -> None:
    response = client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=fmt
    )
    assert response.response.headers["x-sample-rate"] == str(RATE)
    check_duration(fmt, response.content, reference)


@pytest.mark.parametrize("fmt", FORMATS)
def test_streamed_response_decodes_completely(
    client: openai.OpenAI, reference: np.ndarray, fmt: str
) -> None:
    # no-store: the same text was synthesized above, and a cache hit arrives at once
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input=TEXT,
        response_format=fmt,
        extra_headers={"Cache-Control": "no-store"},
    ) as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers
        chunks = list(response.iter_bytes())
    assert len(chunks) >= 2, "audio should arrive in several pieces, sentence by sentence"
    data = b"".join(chunks)
    if fmt == "wav":
        assert data.count(b"RIFF") == 1, "a streamed WAV carries exactly one header"
    check_duration(fmt, data, reference)


def test_pcm_matches_reference_exactly(client: openai.OpenAI, reference: np.ndarray) -> None:
    wav = client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="wav"
    )
    assert np.array_equal(decode(wav.content, "wav").samples, reference)


def test_sse_events(client: openai.OpenAI, reference: np.ndarray) -> None:
    events = []
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input=TEXT,
        response_format="pcm",
        stream_format="sse",
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
            else:
                assert line == "", f"unexpected SSE line {line!r}"
    *deltas, done = events
    assert deltas
    assert all(e["type"] == "speech.audio.delta" for e in deltas)
    assert done["type"] == "speech.audio.done"
    assert set(done["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    assert done["usage"]["input_tokens"] == len(TEXT)
    assert done["usage"]["total_tokens"] == (
        done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
    )
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert np.array_equal(decode(audio, "pcm").samples, reference)


def test_voice_object_form_and_defaults(server: ServerProcess, reference: np.ndarray) -> None:
    body = {"model": "tts-1", "input": TEXT, "voice": {"id": "alloy"}, "response_format": "pcm"}
    r = httpx.post(server.url + "/v1/audio/speech", json=body, timeout=60)
    assert r.status_code == 200
    assert np.array_equal(decode(r.content, "pcm").samples, reference)
    # Only the required field: every optional field has a working default.
    r = httpx.post(server.url + "/v1/audio/speech", json={"input": "Hi there."}, timeout=60)
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/mpeg"
    assert decode(r.content, "mp3").duration > 0.3


def test_voices_differ(client: openai.OpenAI) -> None:
    a = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Same words.", response_format="pcm"
    )
    b = client.audio.speech.create(
        model="tts-1", voice="onyx", input="Same words.", response_format="pcm"
    )
    assert a.content != b.content


def test_speed_changes_duration(client: openai.OpenAI, reference: np.ndarray) -> None:
    for speed in (0.5, 2.0, 4.0, 0.25):
        r = client.audio.speech.create(
            model="tts-1", voice="alloy", input=TEXT, response_format="pcm", speed=speed
        )
        ratio = len(reference) / len(decode(r.content, "pcm").samples)
        assert ratio == pytest.approx(speed, rel=0.2), speed


def test_instructions_are_applied_or_reported(client: openai.OpenAI, reference: np.ndarray) -> None:
    raw = client.audio.speech.with_raw_response.create(
        model="tts-1",
        voice="alloy",
        input=TEXT,
        response_format="pcm",
        instructions="Speak slowly.",
    )
    assert "instructions_applied: slow" in raw.headers.get_list("x-voxgate-warning")
    slow = decode(raw.parse().content, "pcm").samples
    assert len(slow) > 1.15 * len(reference)

    raw = client.audio.speech.with_raw_response.create(
        model="tts-1",
        voice="alloy",
        input=TEXT,
        response_format="pcm",
        instructions="Sound like a pirate captain.",
    )
    warnings = raw.headers.get_list("x-voxgate-warning")
    assert any(w.startswith("instructions_ignored") for w in warnings), warnings
    assert np.array_equal(decode(raw.parse().content, "pcm").samples, reference)


def test_sdk_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.speech.create(model="tts-1", voice="nobody", input="hi")
    assert exc.value.code == "voice_not_found"
    with pytest.raises(openai.NotFoundError) as nf:
        client.audio.speech.create(model="no-such-model", voice="alloy", input="hi")
    assert nf.value.code == "model_not_found"


def test_models_list(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"espeak", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= ids
    assert client.models.retrieve("tts-1").id == "tts-1"
