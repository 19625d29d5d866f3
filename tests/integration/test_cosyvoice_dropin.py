"""voxgate serving CosyVoice's official FastAPI routes, driven the way
upstream's own client drives them (``requests`` with a form body, GET or
POST), and a round trip through two voxgate servers."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import requests

from tests.fakes.modeldirs import make_model_dir
from tests.support.cosyvoice import PROMPT_TEXT, direct, stand_in, voice_prompt
from tests.support.procs import FAKES, fake_env
from voxgate.audio.pcm import from_s16le, to_s16le
from voxgate.testing import ServerProcess

TEXT = "收到好友从远方寄来的生日礼物，那份意外的惊喜让我心中充满了快乐。"


def official_client(url: str, mode: str, prompt_wav: bytes | None = None, **payload: str) -> bytes:
    """Upstream's runtime/python/fastapi/client.py: GET, form body, streamed."""
    files = None
    if prompt_wav is not None:
        files = [("prompt_wav", ("prompt_wav", io.BytesIO(prompt_wav), "application/octet-stream"))]
    response = requests.request(
        "GET", f"{url}/inference_{mode}", data=payload, files=files, stream=True, timeout=60
    )
    assert response.status_code == 200, response.text
    return b"".join(response.iter_content(chunk_size=16000))


def cosyvoice_server(root: Path, model_dir: Path, **extra: str) -> ServerProcess:
    engines = {
        "cv": {
            "kind": "cosyvoice",
            "options": {"model_dir": str(model_dir), "repo_dir": str(FAKES)},
        }
    }
    env = fake_env(VOXGATE_ENGINES=json.dumps(engines), **extra)
    return ServerProcess(root, env)


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("models"), 2)


@pytest.fixture(scope="module")
def v2(v2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with cosyvoice_server(tmp_path_factory.mktemp("v2"), v2_dir) as server:
        yield server


def model_pcm(outputs: object) -> bytes:
    """What voxgate sends for the model's output: s16le, rounded and saturated."""
    return to_s16le(direct(outputs))


# -- with the embedded engine ----------------------------------------------------------


def test_sft_with_upstreams_client_on_the_embedded_engine(server: ServerProcess) -> None:
    pcm = official_client(
        server.url, "sft", tts_text="你好，我是通义生成式语音大模型。", spk_id="中文女"
    )
    assert not pcm.startswith(b"RIFF")  # headerless, as upstream
    samples = from_s16le(pcm)
    assert 1.0 < len(samples) / 22050 < 8.0  # espeak's rate, as a v1 model's
    assert np.abs(samples).max() > 0.1


def test_get_and_post_answer_alike(server: ServerProcess) -> None:
    form = {"tts_text": "Hello there.", "spk_id": "英文女"}
    via_get = official_client(server.url, "sft", **form)
    via_post = httpx.post(server.url + "/inference_sft", data=form, timeout=30)
    assert via_post.status_code == 200
    assert via_post.headers["x-sample-rate"] == "22050"
    assert via_post.content == via_get


def test_v1_instruct_route(server: ServerProcess) -> None:
    pcm = official_client(
        server.url,
        "instruct",
        tts_text="今天天气很好。",
        spk_id="中文男",
        instruct_text="用悲伤的语气<|endofprompt|>",
    )
    assert np.abs(from_s16le(pcm)).max() > 0.1


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"spk_id": "中文女"}, "missing_field"),
        ({"tts_text": "hello", "spk_id": "no-such-speaker"}, "voice_not_found"),
    ],
)
def test_bad_requests_get_coded_errors(
    server: ServerProcess, form: dict[str, str], code: str
) -> None:
    response = httpx.post(server.url + "/inference_sft", data=form, timeout=30)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] == code


def test_a_cloning_route_on_espeak_matches_the_voice_and_says_so(server: ServerProcess) -> None:
    response = httpx.post(
        server.url + "/inference_zero_shot",
        data={"tts_text": "hello", "prompt_text": PROMPT_TEXT},
        files={"prompt_wav": ("p.wav", voice_prompt().wav(16000))},
        timeout=30,
    )
    assert response.status_code == 200
    assert len(response.content) > 2205  # some speech at 22050 Hz
    assert response.headers["x-voxgate-warning"].startswith("voice_matched")


@pytest.mark.parametrize(
    ("prompt", "code"),
    [
        (b"definitely not audio", "prompt_invalid"),
        (voice_prompt(rate=8000).wav(8000), "prompt_sample_rate"),
        (voice_prompt(seconds=31).wav(16000), "prompt_too_long"),
    ],
)
def test_bad_prompts_get_their_own_codes(server: ServerProcess, prompt: bytes, code: str) -> None:
    response = httpx.post(
        server.url + "/inference_cross_lingual",
        data={"tts_text": "hello"},
        files={"prompt_wav": ("p.wav", prompt)},
        timeout=30,
    )
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == code
    assert body["hint"]


def test_uploads_have_their_own_size_limit(server: ServerProcess) -> None:
    big = b"\0" * (21 * 1024 * 1024)
    response = httpx.post(
        server.url + "/inference_cross_lingual",
        data={"tts_text": "hello"},
        files={"prompt_wav": ("p.wav", big)},
        timeout=60,
    )
    assert response.status_code == 413
    assert "VOXGATE_MAX_UPLOAD_BYTES" in response.json()["error"]["hint"]


# -- with CosyVoice (the stand-in model) -------------------------------------------------


def test_zero_shot_returns_the_models_audio(v2: ServerProcess, v2_dir: Path) -> None:
    wav = voice_prompt().wav(16000)
    pcm = official_client(v2.url, "zero_shot", wav, tts_text=TEXT, prompt_text=PROMPT_TEXT)
    model = stand_in().AutoModel(model_dir=str(v2_dir))
    assert pcm == model_pcm(model.inference_zero_shot(TEXT, PROMPT_TEXT, io.BytesIO(wav)))


def test_control_text_typed_for_upstream_is_not_doubled(v2: ServerProcess) -> None:
    wav = voice_prompt().wav(16000)
    plain = official_client(v2.url, "zero_shot", wav, tts_text=TEXT, prompt_text=PROMPT_TEXT)
    typed = official_client(
        v2.url,
        "zero_shot",
        wav,
        tts_text=TEXT,
        prompt_text="You are a helpful assistant.<|endofprompt|>" + PROMPT_TEXT,
    )
    assert typed == plain


def test_cross_lingual_and_instruct2(v2: ServerProcess, v2_dir: Path) -> None:
    wav = voice_prompt().wav(16000)
    model = stand_in().AutoModel(model_dir=str(v2_dir))
    cross = official_client(v2.url, "cross_lingual", wav, tts_text="<|en|>Good morning.")
    assert cross == model_pcm(model.inference_cross_lingual("Good morning.", io.BytesIO(wav)))
    instruct = official_client(
        v2.url, "instruct2", wav, tts_text=TEXT, instruct_text="用四川话说这句话<|endofprompt|>"
    )
    want = model.inference_instruct2(TEXT, "用四川话说这句话<|endofprompt|>", io.BytesIO(wav))
    assert instruct == model_pcm(want)


def test_a_stereo_44k_prompt_is_accepted(v2: ServerProcess) -> None:
    mono = voice_prompt(rate=44100).samples
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(to_s16le(np.repeat(mono, 2)))
    pcm = official_client(v2.url, "cross_lingual", buf.getvalue(), tts_text="你好。")
    assert len(pcm) > 0


def test_zero_shot_without_a_transcript_is_refused(v2: ServerProcess) -> None:
    response = httpx.post(
        v2.url + "/inference_zero_shot",
        data={"tts_text": "你好。", "prompt_text": ""},
        files={"prompt_wav": ("p.wav", voice_prompt().wav(16000))},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "prompt_text_required"


# -- round trip: voxgate A (cosyvoice-http) -> voxgate B (drop-in routes) ----------------


def test_round_trip_through_two_gateways(
    v2: ServerProcess, v2_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("round-trip")
    v1_dir = make_model_dir(root / "models", 1).rename(root / "models" / "CosyVoice-300M")
    engines = {
        "b2": {"kind": "cosyvoice-http", "options": {"url": v2.url, "version": 2}},
    }
    with cosyvoice_server(root / "b1", v1_dir) as b1:
        engines["b1"] = {"kind": "cosyvoice-http", "options": {"url": b1.url, "version": 1}}
        env = {"VOXGATE_ENGINES": json.dumps(engines), "VOXGATE_DEFAULT_ENGINE": "b2"}
        with ServerProcess(root / "a", env) as a:
            wav = voice_prompt().wav(16000)
            model = stand_in().AutoModel(model_dir=str(v2_dir))
            want = model_pcm(model.inference_zero_shot(TEXT, PROMPT_TEXT, io.BytesIO(wav)))
            got = official_client(a.url, "zero_shot", wav, tts_text=TEXT, prompt_text=PROMPT_TEXT)
            assert got == want  # A's client hears exactly B's engine

            # The native API on A, SFT on a v1 model behind B1.
            response = httpx.post(
                a.url + "/v1/tts",
                json={"text": TEXT, "engine": "b1", "voice": "中文女", "format": "pcm"},
                timeout=60,
            )
            assert response.status_code == 200
            assert response.headers["x-sample-rate"] == "22050"
            v1 = stand_in().AutoModel(model_dir=str(v1_dir))
            assert response.content == model_pcm(v1.inference_sft(TEXT, "中文女"))
