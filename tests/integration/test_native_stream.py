"""Native /v1/tts: streamed and whole responses of one request decode to the
same samples; raw PCM streams describe themselves in headers."""

from __future__ import annotations

import httpx
import pytest

from tests.support.audio import decode

TEXT = "Streaming and whole responses must agree. 流式和完整的响应必须一致。Third sentence here."
FRAMES = {"mp3": 576, "aac": 1024, "opus": 960}


def tts(http: httpx.Client, **body: object) -> httpx.Response:
    r = http.post("/v1/tts", json={"text": TEXT, "speaker_id": "en-us-f3", **body})
    assert r.status_code == 200, r.text
    return r


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
@pytest.mark.parametrize("rate", [None, 16000, 48000])
def test_stream_equals_whole(http: httpx.Client, fmt: str, rate: int | None) -> None:
    if fmt == "opus" and rate is None:
        rate = 24000  # opus cannot carry espeak's 22050 Hz; tested via default below
    extra = {} if rate is None else {"sample_rate": rate}
    whole = tts(http, format=fmt, stream=False, **extra)
    with http.stream(
        "POST",
        "/v1/tts",
        json={"text": TEXT, "speaker_id": "en-us-f3", "format": fmt, "stream": True, **extra},
    ) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers
        streamed_bytes = b"".join(r.iter_bytes())
    assert "content-length" in whole.headers
    out_rate = int(whole.headers["x-sample-rate"])
    a = decode(whole.content, fmt, pcm_rate=out_rate)
    b = decode(streamed_bytes, fmt, pcm_rate=out_rate)
    if fmt in ("flac", "wav", "pcm"):
        assert (a.samples == b.samples).all()
        assert len(a.samples) == len(b.samples)
    else:
        frame = FRAMES[fmt] * (a.sample_rate / out_rate if fmt == "opus" else 1)
        assert abs(len(a.samples) - len(b.samples)) <= frame


def test_opus_default_rate_is_supported(http: httpx.Client) -> None:
    r = tts(http, format="opus")
    assert r.headers["x-sample-rate"] == "24000"  # espeak's 22050 -> nearest Opus rate


def test_raw_pcm_stream_headers(http: httpx.Client) -> None:
    with http.stream("POST", "/v1/tts", json={"text": TEXT, "format": "pcm", "stream": True}) as r:
        assert r.headers["x-sample-rate"] == "22050"
        assert r.headers["x-channels"] == "1"
        assert r.headers["content-type"] == "audio/pcm"
        data = b"".join(r.iter_bytes())
    assert len(data) % 2 == 0
    assert len(data) > 22050


def test_whole_wav_and_flac_headers_carry_exact_lengths(http: httpx.Client) -> None:
    wav = tts(http, format="wav").content
    assert int.from_bytes(wav[40:44], "little") == len(wav) - 44
    flac = tts(http, format="flac").content
    total = decode(flac, "flac")
    # STREAMINFO: 36-bit total sample count at bytes 21..26 of the file
    streaminfo_total = int.from_bytes(flac[21:26], "big") & ((1 << 36) - 1)
    assert streaminfo_total == len(total.samples)


def test_native_sse(http: httpx.Client) -> None:
    import base64
    import json

    events = []
    with http.stream(
        "POST",
        "/v1/tts",
        json={"text": TEXT, "format": "pcm", "stream": True, "stream_format": "sse"},
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    assert done["sample_rate"] == 22050
    assert done["format"] == "pcm"
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert done["audio_seconds"] == pytest.approx(len(audio) / 2 / 22050, abs=0.002)


def test_modes_and_controls(http: httpx.Client) -> None:
    base = decode(tts(http, format="pcm").content, "pcm", 22050).samples
    louder = decode(tts(http, format="pcm", volume=1.8).content, "pcm", 22050).samples
    assert abs(louder).max() > abs(base).max()
    higher = tts(http, format="pcm", pitch=6).content
    assert higher != tts(http, format="pcm").content
    sad = tts(http, format="pcm", mode="instruct", instruct="用悲伤的语气朗读")
    assert any("sad" in w for w in sad.headers.get_list("x-voxgate-warning"))
    assert len(decode(sad.content, "pcm", 22050).samples) > len(base)
