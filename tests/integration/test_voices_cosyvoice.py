"""A registered voice on the in-process CosyVoice engine (the stand-in model):
features are computed once at registration, reused by every request, saved so
a restart restores instead of extracting, and gone when the voice is."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.modeldirs import make_model_dir
from tests.support.cosyvoice import direct, stand_in
from tests.support.procs import FAKES, fake_env
from tests.support.prompts import SENTENCE, speech, wav_bytes
from voxgate.audio.pcm import to_s16le
from voxgate.testing import ServerProcess

TEXT = "收到好友从远方寄来的生日礼物。"


def server(root: Path, model_dir: Path) -> ServerProcess:
    options = {"model_dir": str(model_dir), "repo_dir": str(FAKES)}
    engines = {"cv": {"kind": "cosyvoice", "options": options}}
    return ServerProcess(root, fake_env(VOXGATE_ENGINES=json.dumps(engines)))


def features(http: httpx.Client) -> dict[str, int]:
    return dict(http.get("/v1/engines/cv").json()["info"]["voice_features"])


def wait_for(http: httpx.Client, **expected: int) -> dict[str, int]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = features(http)
        if all(found[k] == v for k, v in expected.items()):
            return found
        time.sleep(0.05)
    return features(http)


def speak(http: httpx.Client, voice_id: str) -> bytes:
    response = http.post(
        "/v1/audio/speech",
        json={"input": TEXT, "voice": voice_id, "response_format": "pcm", "sample_rate": 24000},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-voxgate-voice"] == voice_id
    return response.content


def test_features_once_reused_restored_and_deleted(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "models", 2)
    data_dir = tmp_path / "data"
    prompt = wav_bytes(speech(), 24000)
    with server(data_dir, model_dir) as srv, httpx.Client(base_url=srv.url, timeout=60) as http:
        made = http.post(
            "/v1/audio/voices",
            data={"name": "fox", "consent": "I agree.", "prompt_text": SENTENCE, "engine": "cv"},
            files={"audio_sample": ("fox.wav", prompt, "audio/wav")},
        )
        assert made.status_code == 200, made.text
        voice: dict[str, Any] = made.json()
        assert any("prepared" in note for note in voice["notes"])
        assert wait_for(http, extracted=1)["extracted"] == 1  # at registration

        first = speak(http, voice["id"])
        for _ in range(2):
            assert speak(http, voice["id"]) == first
        assert features(http) == {"cached": 1, "extracted": 1, "restored": 0}

        sample = http.get(voice["sample_url"]).content
        model = stand_in().AutoModel(model_dir=str(model_dir))
        want = model.inference_zero_shot(TEXT, SENTENCE, io.BytesIO(sample))
        assert first == to_s16le(direct(want))  # the model's zero-shot audio for this voice

    saved = list((data_dir / "blobs" / "voices" / "features" / voice["id"]).iterdir())
    assert len(saved) == 1

    with server(data_dir, model_dir) as srv, httpx.Client(base_url=srv.url, timeout=60) as http:
        assert features(http) == {"cached": 0, "extracted": 0, "restored": 0}
        assert speak(http, voice["id"]) == first  # after a restart: restored, not extracted
        assert features(http) == {"cached": 1, "extracted": 0, "restored": 1}

        assert http.delete(f"/v1/audio/voices/{voice['id']}").status_code == 200
        assert features(http)["cached"] == 0
        assert not (data_dir / "blobs" / "voices" / "features" / voice["id"]).exists()
        assert not list((data_dir / "blobs" / "voices" / "samples").rglob("*.wav"))


def test_a_new_transcript_gets_new_features(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "models", 2)
    with (
        server(tmp_path / "data", model_dir) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as http,
    ):
        made = http.post(
            "/v1/audio/voices",
            data={"name": "fox", "consent": "I agree.", "prompt_text": "wrong words"},
            files={"audio_sample": ("fox.wav", wav_bytes(speech(), 24000), "audio/wav")},
        ).json()
        wait_for(http, extracted=1)
        before = speak(http, made["id"])
        http.patch(f"/v1/audio/voices/{made['id']}", json={"prompt_text": SENTENCE})
        after = speak(http, made["id"])
        assert after != before  # zero-shot conditions on the transcript
        assert features(http)["extracted"] == 2
        assert features(http)["cached"] == 1  # the stale entry was dropped


def test_a_voice_on_the_drop_in_routes(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "models", 2)
    with (
        server(tmp_path / "data", model_dir) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as http,
    ):
        made = http.post(
            "/v1/audio/voices",
            data={"name": "fox", "consent": "I agree.", "prompt_text": SENTENCE},
            files={"audio_sample": ("fox.wav", wav_bytes(speech(), 24000), "audio/wav")},
        ).json()
        sft = http.post("/inference_sft", data={"tts_text": TEXT, "spk_id": made["id"]})
        assert sft.status_code == 200, sft.text
        assert sft.content == speak(http, made["id"])  # zero-shot, as on the OpenAI route
        instruct = http.post(
            "/inference_instruct",
            data={"tts_text": TEXT, "spk_id": made["id"], "instruct_text": "用四川话说"},
        )
        assert instruct.status_code == 200, instruct.text
        assert len(instruct.content) > 24000
        assert instruct.content != sft.content  # instruct2 with the voice's prompt
