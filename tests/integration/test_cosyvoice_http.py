"""The ``cosyvoice-http`` engine against CosyVoice's official FastAPI server
(its stand-in: same routes, multipart forms and headerless int16 PCM, on the
stand-in model), including the ways real servers fail."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fakes.modeldirs import make_model_dir
from tests.support.cosyvoice import collect, direct, join, request, stand_in, voice_prompt
from tests.support.procs import FakeServer
from voxgate.audio.pcm import from_s16le, to_s16le
from voxgate.engines.base import Mode
from voxgate.engines.cosyvoice.http import CosyVoiceHttpEngine
from voxgate.errors import EngineTimeout, EngineUnavailable, UpstreamError
from voxgate.testing import ServerProcess, free_port

SERVER = "fakes.official.fastapi_server"
TEXT = "收到好友从远方寄来的生日礼物。那份意外的惊喜让我心中充满了甜蜜的快乐。"


def as_received(audio: np.ndarray) -> np.ndarray:
    """What survives upstream's int16 cast (no clipping, as upstream)."""
    return from_s16le((audio * 2**15).astype(np.int16).tobytes())


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("models"), 2)


@pytest.fixture(scope="module")
def v2_server(v2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeServer]:
    with FakeServer(SERVER, ["--model_dir", str(v2_dir)], tmp_path_factory.mktemp("v2")) as srv:
        yield srv


@pytest.fixture
async def engine(v2_server: FakeServer) -> AsyncIterator[CosyVoiceHttpEngine]:
    eng = CosyVoiceHttpEngine("remote", url=v2_server.url, version=2)
    await eng.start()
    yield eng
    await eng.close()


@pytest.mark.parametrize("mode", [Mode.ZERO_SHOT, Mode.CROSS_LINGUAL, Mode.INSTRUCT])
async def test_each_mode_returns_the_models_audio(
    engine: CosyVoiceHttpEngine, v2_dir: Path, mode: Mode
) -> None:
    prompt = voice_prompt()
    got = join(await collect(engine, request(TEXT, mode, prompt=prompt, instruct="用四川话说")))
    model = stand_in().AutoModel(model_dir=str(v2_dir))
    wav = prompt.wav(16000)
    want = []
    for sentence in ("收到好友从远方寄来的生日礼物。", "那份意外的惊喜让我心中充满了甜蜜的快乐。"):
        if mode == Mode.ZERO_SHOT:
            outputs = model.inference_zero_shot(sentence, prompt.text, io.BytesIO(wav))
        elif mode == Mode.CROSS_LINGUAL:
            outputs = model.inference_cross_lingual(sentence, io.BytesIO(wav))
        else:
            outputs = model.inference_instruct2(
                sentence, "用四川话说<|endofprompt|>", io.BytesIO(wav)
            )
        want.append(direct(outputs))
    assert np.array_equal(got, as_received(np.concatenate(want)))
    assert engine.capabilities.sample_rate == 24000


async def test_v1_sft_instruct_and_language_tags(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("v1")
    path = make_model_dir(root, 1).rename(root / "CosyVoice-300M-Instruct")
    with FakeServer(SERVER, ["--model_dir", str(path)], root) as srv:
        eng = CosyVoiceHttpEngine(
            "remote", url=srv.url, version=1, modes=["sft", "instruct", "cross_lingual"]
        )
        await eng.start()
        speaker = eng.speakers()[0]
        model = stand_in().AutoModel(model_dir=str(path))
        sft = join(await collect(eng, request("你好，世界。", Mode.SFT, speaker=speaker)))
        assert np.array_equal(
            sft, as_received(direct(model.inference_sft("你好，世界。", "中文女")))
        )
        instruct = join(
            await collect(
                eng, request("你好。", Mode.INSTRUCT, speaker=speaker, instruct="A calm narrator.")
            )
        )
        want = direct(
            model.inference_instruct("你好。", "中文女", "A calm narrator.<|endofprompt|>")
        )
        assert np.array_equal(instruct, as_received(want))
        prompt = voice_prompt()
        cross = join(
            await collect(eng, request("Good morning.", Mode.CROSS_LINGUAL, prompt=prompt))
        )
        tagged = direct(
            model.inference_cross_lingual("<|en|>Good morning.", io.BytesIO(prompt.wav(16000)))
        )
        assert np.array_equal(cross, as_received(tagged))
        assert eng.capabilities.sample_rate == 22050
        await eng.close()


async def test_health_follows_the_server(v2_dir: Path, tmp_path: Path) -> None:
    srv = FakeServer(SERVER, ["--model_dir", str(v2_dir)], tmp_path).start()
    eng = CosyVoiceHttpEngine("remote", url=srv.url, version=2, connect_timeout_s=0.5)
    await eng.start()
    assert eng.health.ok is True
    assert eng.healthy is True
    srv.stop()
    assert (await eng.check_health()).ok is False
    assert "connect" in (eng.health.error or "").lower()
    assert eng.healthy is False
    assert eng.ready  # still serving: requests get a clean 503 while it is down
    assert eng.describe()["health"]["consecutive_failures"] == 1
    await eng.close()


# -- failures -------------------------------------------------------------------------


async def test_errors_before_the_first_byte_are_retried(
    v2_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voxgate.engines.remote")
    args = ["--model_dir", str(v2_dir), "--fail-first", "2"]
    with FakeServer(SERVER, args, tmp_path) as srv:
        eng = CosyVoiceHttpEngine("remote", url=srv.url, version=2, retries=2, backoff_s=0.01)
        await eng.start()
        chunks = await collect(eng, request("你好。", Mode.CROSS_LINGUAL, prompt=voice_prompt()))
        assert join(chunks).size > 0
        retries = [r for r in caplog.records if "retrying" in r.getMessage()]
        assert len(retries) == 2
        await eng.close()


async def test_retries_run_out_with_a_clear_error(v2_dir: Path, tmp_path: Path) -> None:
    args = ["--model_dir", str(v2_dir), "--fail-first", "5"]
    with FakeServer(SERVER, args, tmp_path) as srv:
        eng = CosyVoiceHttpEngine("remote", url=srv.url, version=2, retries=1, backoff_s=0.01)
        await eng.start()
        with pytest.raises(UpstreamError, match="after 2 attempts") as info:
            await collect(eng, request("你好。", Mode.CROSS_LINGUAL, prompt=voice_prompt()))
        assert info.value.code == "upstream_error"
        assert info.value.status == 502
        assert "HTTP 500" in info.value.message
        await eng.close()


async def test_a_server_dying_mid_stream_is_not_retried(v2_dir: Path, tmp_path: Path) -> None:
    args = ["--model_dir", str(v2_dir), "--die-after-chunks", "1"]
    with FakeServer(SERVER, args, tmp_path) as srv:
        eng = CosyVoiceHttpEngine("remote", url=srv.url, version=2, retries=3, backoff_s=0.01)
        await eng.start()
        received = []

        async def listen() -> None:
            req = request("第一句。第二句。第三句。", Mode.CROSS_LINGUAL, prompt=voice_prompt())
            async for chunk in eng.synthesize(req):
                received.append(chunk)

        with pytest.raises(UpstreamError, match="failed mid-stream") as info:
            await listen()
        assert received  # audio had arrived: a retry would have repeated it
        assert info.value.code == "upstream_error"
        assert "not reachable" not in info.value.message  # no second attempt was made
        await eng.close()


async def test_a_server_that_is_down_is_engine_unavailable() -> None:
    eng = CosyVoiceHttpEngine(
        "remote", url=f"http://127.0.0.1:{free_port()}", version=2, retries=2, backoff_s=0.01
    )
    await eng.start()  # starting does not need the server
    assert eng.health.ok is False
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="not reachable after 3 attempts") as info:
        await collect(eng, request("你好。", Mode.CROSS_LINGUAL, prompt=voice_prompt()))
    assert time.monotonic() - started < 3
    assert info.value.status == 503
    assert info.value.retry_after
    await eng.close()


async def test_a_stalled_server_hits_the_read_timeout(v2_dir: Path, tmp_path: Path) -> None:
    args = ["--model_dir", str(v2_dir), "--stall-s", "1.5"]
    with FakeServer(SERVER, args, tmp_path) as srv:
        eng = CosyVoiceHttpEngine(
            "remote", url=srv.url, version=2, read_timeout_s=0.3, retries=1, backoff_s=0.01
        )
        await eng.start()
        started = time.monotonic()
        with pytest.raises(EngineTimeout, match="did not answer in time") as info:
            await collect(eng, request("你好。", Mode.CROSS_LINGUAL, prompt=voice_prompt()))
        assert time.monotonic() - started < 3
        assert info.value.code == "engine_timeout"
        await eng.close()


# -- through a voxgate server ---------------------------------------------------------


def remote_config(url: str, **options: object) -> dict[str, str]:
    engines = {
        "remote": {
            "kind": "cosyvoice-http",
            "options": {"url": url, "version": 2, "backoff_s": 0.01, **options},
        }
    }
    return {"VOXGATE_ENGINES": json.dumps(engines)}


def test_a_voxgate_client_sees_a_truncated_body_when_upstream_dies(
    v2_dir: Path, tmp_path: Path
) -> None:
    args = ["--model_dir", str(v2_dir), "--die-after-chunks", "1"]
    with (
        FakeServer(SERVER, args, tmp_path / "up") as up,
        ServerProcess(tmp_path / "gw", remote_config(up.url)) as gateway,
    ):
        prompt = voice_prompt().wav(16000)
        statuses = []

        def listen() -> None:
            with (
                httpx.Client(timeout=30) as client,
                client.stream(
                    "POST",
                    gateway.url + "/inference_cross_lingual",
                    data={"tts_text": "第一句。第二句。第三句。"},
                    files={"prompt_wav": ("prompt.wav", prompt)},
                ) as response,
            ):
                statuses.append(response.status_code)
                for _ in response.iter_bytes():
                    pass

        with pytest.raises(httpx.RemoteProtocolError):  # never a short but valid-looking body
            listen()
        assert statuses == [200]  # the stream had begun: audio, then a cut
        assert gateway.alive()


def test_a_voxgate_client_gets_503_when_upstream_is_down(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with ServerProcess(tmp_path, remote_config(dead, retries=1)) as gateway:
        response = httpx.post(
            gateway.url + "/inference_cross_lingual",
            data={"tts_text": "你好。"},
            files={"prompt_wav": ("prompt.wav", voice_prompt().wav(16000))},
            timeout=30,
        )
        assert response.status_code == 503
        assert response.headers["retry-after"]
        error = response.json()["error"]
        assert error["code"] == "engine_unavailable"
        assert dead in error["message"]
        health = httpx.get(gateway.url + "/v1/engines/remote", timeout=5).json()
        assert health["healthy"] is False
        assert health["info"]["health"]["error"]
        ready = httpx.get(gateway.url + "/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["remote_health"] == {"remote": False}


def test_pcm_chunks_split_mid_sample_are_reassembled() -> None:
    from voxgate.engines.remote import PcmReassembler

    data = to_s16le(np.linspace(-1, 1, 101, dtype=np.float32))
    pcm = PcmReassembler()
    pieces = [pcm.feed(data[i : i + 7]) for i in range(0, len(data), 7)]
    assert all(len(p) % 2 == 0 for p in pieces)
    assert b"".join(pieces) == data
    assert pcm.leftover() == 0
