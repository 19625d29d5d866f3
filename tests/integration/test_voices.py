"""The voice library through a real server: registration with the openai SDK in
every container, rejections from real bad files, use on every surface, the
audit log, and deletion that leaves nothing behind."""

from __future__ import annotations

import base64
import io
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.support.audio import decode
from tests.support.prompts import CONTAINERS, SENTENCE, encode, speech, wav_bytes
from voxgate.testing import ServerProcess

CONSENT = "I, Test Speaker, agree that my voice may be used to make this voice."
MIME = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
    "m4a": "audio/mp4",
    "webm": "audio/webm",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"VOXGATE_VOICE_USAGE_FLUSH_S": "0.2"}
    with ServerProcess(tmp_path_factory.mktemp("voices"), env) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def sdk(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused")


@pytest.fixture(scope="module")
def fox_wav() -> bytes:
    return wav_bytes(speech(), 24000)


def register(http: httpx.Client, data: bytes, **fields: Any) -> httpx.Response:
    form = {"name": "fox", "consent": CONSENT, **fields}
    return http.post(
        "/v1/audio/voices", data=form, files={"audio_sample": ("prompt.wav", data, "audio/wav")}
    )


@pytest.fixture(scope="module")
def voice(http: httpx.Client, fox_wav: bytes) -> dict[str, Any]:
    response = register(http, fox_wav, prompt_text=SENTENCE, tags="test,fox")
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- registration ------------------------------------------------------------------


@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_register_every_container_with_the_openai_sdk(
    sdk: openai.OpenAI, http: httpx.Client, container: str
) -> None:
    data = encode(speech(), 24000, container)
    created = sdk.audio.voices.create(
        name=f"fox {container}",
        audio_sample=(f"prompt.{container}", data, MIME[container]),
        consent=CONSENT,
    )
    assert created.id.startswith("voice_")
    assert created.object == "audio.voice"
    assert created.name == f"fox {container}"
    assert created.created_at > 0
    body = http.get(f"/v1/audio/voices/{created.id}").json()
    assert body["type"] == "audio_sample"
    assert body["consent"] == CONSENT
    intake = body["intake"]
    assert intake["container"]  # what the bytes were, whatever the name said
    assert 3.0 < body["duration_s"] < 5.0
    assert body["sample_rate"] >= 16000


def test_the_transcript_comes_from_speech_recognition_when_omitted(
    http: httpx.Client, fox_wav: bytes
) -> None:
    body = register(http, fox_wav).json()
    assert body["transcript_source"] == "asr:pocketsphinx"
    words = set((body["prompt_text"] or "").lower().split())
    assert words & {"quick", "brown", "fox", "lazy", "dog", "back", "home", "runs"}
    assert any("transcribed" in note for note in body["notes"])


def test_the_registration_report(voice: dict[str, Any]) -> None:
    assert voice["transcript_source"] == "given"
    assert voice["prompt_text"] == SENTENCE
    assert voice["tags"] == ["test", "fox"]
    assert voice["intake"]["original_sample_rate"] == 24000
    assert voice["sample_url"] == f"/v1/audio/voices/{voice['id']}/sample"


def test_the_sample_is_the_normalized_prompt(http: httpx.Client, voice: dict[str, Any]) -> None:
    response = http.get(voice["sample_url"])
    assert response.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(response.content)) as w:
        assert w.getnchannels() == 1
        frames = w.readframes(w.getnframes())
        seconds = w.getnframes() / w.getframerate()
    assert seconds == pytest.approx(voice["duration_s"], abs=0.01)
    peak = np.abs(np.frombuffer(frames, "<i2")).max() / 32768
    assert 0.8 < peak <= 1.0


def test_identical_prompts_are_stored_once(
    http: httpx.Client, server: ServerProcess, voice: dict[str, Any], fox_wav: bytes
) -> None:
    samples = server.data_dir / "blobs" / "voices" / "samples"
    before = sorted(samples.rglob("*.wav"))
    first = register(http, fox_wav, prompt_text="one").json()
    second = register(http, fox_wav, prompt_text="two").json()
    assert first["id"] != second["id"]
    assert sorted(samples.rglob("*.wav")) == before  # the same audio, one file
    assert http.get(first["sample_url"]).content == http.get(second["sample_url"]).content


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: wav_bytes(speech()[:24000], 24000), "prompt_too_short"),
        (lambda: wav_bytes(np.tile(speech(), 5), 24000), "prompt_too_long"),
        (lambda: wav_bytes(speech(rate=8000), 8000), "prompt_sample_rate"),
        (lambda: wav_bytes(np.zeros(24000 * 5, np.float32), 24000), "prompt_silent"),
        (lambda: wav_bytes(np.clip(speech() * 40, -1, 1), 24000), "prompt_clipped"),
        (lambda: b"this is not audio at all, just some text" * 100, "prompt_invalid"),
        (lambda: wav_bytes(speech(), 24000)[:30], "prompt_corrupt"),
    ],
    ids=["too-short", "too-long", "8khz", "silent", "clipped", "not-audio", "truncated"],
)
def test_bad_prompts_are_refused_with_their_own_code(
    http: httpx.Client, make: Any, code: str
) -> None:
    response = register(http, make())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["hint"]


def test_an_oversized_upload_is_refused_before_it_is_buffered(http: httpx.Client) -> None:
    response = register(http, b"\0" * (21 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_consent_is_required(http: httpx.Client, fox_wav: bytes) -> None:
    response = register(http, fox_wav, consent="  ")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "consent_required"
    response = register(http, fox_wav, consent="cons_" + "0" * 24)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "consent_not_found"


def test_a_consent_recording_can_back_a_voice(http: httpx.Client, fox_wav: bytes) -> None:
    recorded = http.post(
        "/v1/audio/voice_consents",
        data={"name": "Test Speaker", "language": "en"},
        files={"recording": ("consent.wav", fox_wav, "audio/wav")},
    )
    assert recorded.status_code == 200, recorded.text
    consent = recorded.json()
    assert consent["id"].startswith("cons_")
    voice = register(http, fox_wav, consent=consent["id"]).json()
    assert consent["id"] in voice["consent"]
    busy = http.delete(f"/v1/audio/voice_consents/{consent['id']}")
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "consent_in_use"
    assert http.delete(f"/v1/audio/voices/{voice['id']}").status_code == 200
    assert http.delete(f"/v1/audio/voice_consents/{consent['id']}").status_code == 200


# -- listing and changing ---------------------------------------------------------------


def test_listing_pages_through_speakers_then_voices(
    http: httpx.Client, voice: dict[str, Any]
) -> None:
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 7}
        if after:
            params["after"] = after
        page = http.get("/v1/audio/voices", params=params).json()
        seen += [v["id"] for v in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert len(seen) == len(set(seen))
    assert voice["id"] in seen
    only = http.get("/v1/audio/voices", params={"type": "audio_sample", "limit": 1000}).json()
    assert {v["type"] for v in only["data"]} == {"audio_sample"}
    assert voice["id"] in {v["id"] for v in only["data"]}


def test_patch_edits_the_transcript_and_is_audited(http: httpx.Client, fox_wav: bytes) -> None:
    made = register(http, fox_wav).json()
    changed = http.patch(f"/v1/audio/voices/{made['id']}", json={"prompt_text": SENTENCE})
    assert changed.status_code == 200
    assert changed.json()["prompt_text"] == SENTENCE
    assert changed.json()["transcript_source"] == "edited"
    events = http.get("/v1/audit", params={"subject_id": made["id"]}).json()["data"]
    assert [e["action"] for e in events] == ["voice.created", "voice.updated"]
    assert events[1]["detail"]["after"]["prompt_text"] == SENTENCE


# -- using a voice ----------------------------------------------------------------------


def test_a_voice_speaks_on_the_openai_route(sdk: openai.OpenAI, voice: dict[str, Any]) -> None:
    for form in (voice["id"], {"id": voice["id"]}):
        with sdk.audio.speech.with_streaming_response.create(
            model="tts-1",
            voice=form,
            input="Hello from a registered voice.",  # type: ignore[arg-type]
            response_format="wav",
        ) as response:
            audio = response.read()
            assert response.headers["x-voxgate-voice"] == voice["id"]
            warnings = response.headers.get_list("x-voxgate-warning")
        assert decode(audio, "wav").duration > 1.0
        assert any(w.startswith("voice_matched") for w in warnings)


@pytest.mark.parametrize("mode", ["zero_shot", "cross_lingual", None])
def test_a_voice_speaks_on_the_native_route(
    http: httpx.Client, voice: dict[str, Any], mode: str | None
) -> None:
    body: dict[str, Any] = {"text": "Native route.", "voice": voice["id"], "format": "wav"}
    if mode:
        body["mode"] = mode
    response = http.post("/v1/tts", json=body)
    assert response.status_code == 200, response.text
    assert decode(response.content, "wav").duration > 0.5


def test_a_voice_in_a_built_in_mode_is_a_clear_error(
    http: httpx.Client, voice: dict[str, Any]
) -> None:
    response = http.post("/v1/tts", json={"text": "x", "voice": voice["id"], "mode": "sft"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "voice_mode_mismatch"


def test_a_voice_speaks_on_the_drop_in_route(http: httpx.Client, voice: dict[str, Any]) -> None:
    response = http.post("/inference_sft", data={"tts_text": "Drop in.", "spk_id": voice["id"]})
    assert response.status_code == 200, response.text
    assert response.headers["x-voxgate-voice"] == voice["id"]
    assert len(response.content) > 22050  # over half a second of int16 at 22050 Hz


def test_an_unknown_voice_id_is_voice_not_found(http: httpx.Client) -> None:
    response = http.post("/v1/tts", json={"text": "x", "voice": "voice_" + "f" * 24})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "voice_not_found"


def test_inline_prompts_base64_and_multipart(http: httpx.Client, fox_wav: bytes) -> None:
    body = {
        "text": "An inline prompt.",
        "reference_audio": base64.b64encode(encode(speech(), 24000, "mp3")).decode(),
        "reference_text": SENTENCE,
        "format": "wav",
    }
    as_json = http.post("/v1/tts", json=body)
    assert as_json.status_code == 200, as_json.text
    assert any(w.startswith("voice_matched") for w in as_json.headers.get_list("x-voxgate-warning"))
    as_form = http.post(
        "/v1/tts",
        data={"text": "An inline prompt.", "reference_text": SENTENCE, "format": "wav"},
        files={"reference_audio": ("p.wav", fox_wav, "audio/wav")},
    )
    assert as_form.status_code == 200, as_form.text
    bad = http.post("/v1/tts", json={"text": "x", "reference_audio": "%%% not base64 %%%"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "prompt_invalid"
    short = http.post(
        "/v1/tts",
        data={"text": "x"},
        files={"reference_audio": ("p.wav", wav_bytes(speech()[:12000], 24000), "audio/wav")},
    )
    assert short.json()["error"]["code"] == "prompt_too_short"


# -- use counts, audit, deletion ------------------------------------------------------------


def test_uses_are_counted_and_deletion_leaves_nothing(
    http: httpx.Client, server: ServerProcess
) -> None:
    words = "This voice will be used a few times, counted, and then deleted for good."
    made = register(http, wav_bytes(speech(words, "en-us-f2"), 24000), prompt_text=words).json()
    for _ in range(3):
        assert http.post("/v1/tts", json={"text": "Use.", "voice": made["id"]}).status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if http.get(f"/v1/audio/voices/{made['id']}").json()["use_count"] == 3:
            break
        time.sleep(0.1)
    assert http.get(f"/v1/audio/voices/{made['id']}").json()["use_count"] == 3

    blobs = server.data_dir / "blobs"
    before = {p for p in blobs.rglob("*") if p.is_file()}
    deleted = http.delete(f"/v1/audio/voices/{made['id']}")
    assert deleted.json() == {"id": made["id"], "object": "audio.voice.deleted", "deleted": True}
    after = {p for p in blobs.rglob("*") if p.is_file()}
    gone = before - after
    assert any(p.suffix == ".wav" for p in gone)  # its prompt audio
    assert not any(made["id"] in str(p) for p in after)  # and no features
    assert http.get(f"/v1/audio/voices/{made['id']}").status_code == 404
    assert http.delete(f"/v1/audio/voices/{made['id']}").status_code == 404
    actions = [
        e["action"] for e in http.get("/v1/audit", params={"subject_id": made["id"]}).json()["data"]
    ]
    assert actions[0] == "voice.created"
    assert "voice.used" in actions
    assert actions[-1] == "voice.deleted"
    used = http.get("/v1/audit", params={"subject_id": made["id"], "action": "voice.used"})
    assert sum(e["detail"]["count"] for e in used.json()["data"]) == 3


def test_voices_survive_a_restart(tmp_path: Path, fox_wav: bytes) -> None:
    with ServerProcess(tmp_path) as first, httpx.Client(base_url=first.url, timeout=60) as http:
        made = register(http, fox_wav, prompt_text=SENTENCE).json()
    with ServerProcess(tmp_path) as again, httpx.Client(base_url=again.url, timeout=60) as http:
        assert http.get(f"/v1/audio/voices/{made['id']}").json()["prompt_text"] == SENTENCE
        response = http.post("/v1/tts", json={"text": "Still here.", "voice": made["id"]})
        assert response.status_code == 200
