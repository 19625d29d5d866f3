"""The ``cosyvoice-triton`` engine against a stand-in Triton server.

The stand-in (tests/fakes/official/triton_server.py) speaks Triton's HTTP
protocol on loopback and runs the stand-in CosyVoice model, so what the
engine gets back can be compared with what that model produces in this
process for the same texts and prompt: equal samples mean the prompt, the
texts and the waveform crossed the wire intact, in binary and in JSON.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.fakes.modeldirs import make_model_dir
from tests.fakes.official.triton_server import DEFAULT_PROMPT_TEXT, default_prompt
from tests.support.procs import FAKES, FakeServer
from voxgate.audio.prompt import PromptAudio
from voxgate.engines.base import AudioChunk, EngineRequest, Mode
from voxgate.engines.cosyvoice.triton import CosyVoiceTritonEngine
from voxgate.engines.registry import factory_for
from voxgate.errors import EngineTimeout, EngineUnavailable, UpstreamError
from voxgate.testing import free_port
from voxgate.text.cosyvoice_syntax import V3_PREFIX
from voxgate.text.markup import parse
from voxgate.text.split import Segment, split

MODULE = "fakes.official.triton_server"
TEXT = "你好，世界。今天天气很好！Hello from Triton."
# upstream client_http.py's defaults
CLIENT_REFERENCE = (
    "吃燕窝就选燕之屋，本节目由26年专注高品质燕窝的燕之屋冠名播出。"
    "豆奶牛奶换着喝，营养更均衡，本节目由豆本豆豆奶特约播出。"
)
CLIENT_TARGET = "身临其境，换新体验。塑造开源语音合成新范式，让智能语音更自然。"


def make_prompt() -> PromptAudio:
    """A 3 s 'recording' at 16 kHz, the rate Triton's pipeline reads."""
    rate = 16000
    t = np.arange(3 * rate, dtype=np.float64) / rate
    samples = 0.3 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 0.7 * t)) * t)
    samples *= 0.6 + 0.4 * np.sin(2 * np.pi * 2.1 * t) ** 2
    return PromptAudio(samples.astype(np.float32), rate, text="希望你以后能够做的比我还好呦。")


PROMPT = make_prompt()


def segments(text: str) -> tuple[Segment, ...]:
    return tuple(split(parse(text)))


def direct(outputs: Any) -> np.ndarray:
    """The audio of an upstream generator, concatenated."""
    return np.concatenate([o["tts_speech"].numpy().reshape(-1) for o in outputs])


def by_segment(chunks: list[AudioChunk]) -> dict[int, np.ndarray]:
    out: dict[int, list[np.ndarray]] = {}
    for chunk in chunks:
        out.setdefault(chunk.segment, []).append(chunk.samples)
    return {index: np.concatenate(parts) for index, parts in out.items()}


def assert_same_audio(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape
    assert expected.size > 0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


@asynccontextmanager
async def running(url: str, **options: Any) -> AsyncIterator[CosyVoiceTritonEngine]:
    options.setdefault("backoff_s", 0.01)
    options.setdefault("health_interval_s", 300)  # the tests probe when they mean to
    engine = CosyVoiceTritonEngine("triton", url=url, **options)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


async def synthesize(engine: CosyVoiceTritonEngine, request: EngineRequest) -> list[AudioChunk]:
    return [chunk async for chunk in engine.synthesize(request)]


def zero_shot(text: str) -> EngineRequest:
    return EngineRequest("t", Mode.ZERO_SHOT, segments(text), None, prompt=PROMPT)


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("triton-models")
    return {2: make_model_dir(root, 2), 3: make_model_dir(root, 3)}


@pytest.fixture(scope="module")
def servers(
    model_dirs: dict[int, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FakeServer]]:
    """Three stand-ins, started side by side: the main one (cosyvoice2,
    cosyvoice3, and a decoupled cosyvoice2), one that fails its first four
    inferences, one that stalls before every answer."""
    workdir = tmp_path_factory.mktemp("triton-logs")
    v2 = ["--model", f"cosyvoice2={model_dirs[2]}"]
    main = [*v2, "--model", f"cosyvoice3={model_dirs[3]}"]
    main += ["--model", f"streaming={model_dirs[2]}", "--decoupled", "streaming"]
    started = {
        "main": FakeServer(MODULE, main, workdir),
        "flaky": FakeServer(MODULE, [*v2, "--fail-first", "4"], workdir),
        "stalled": FakeServer(MODULE, [*v2, "--stall-s", "2"], workdir),
    }
    with ThreadPoolExecutor(len(started)) as pool:
        list(pool.map(lambda s: s.start(), started.values()))
    try:
        yield started
    finally:
        with ThreadPoolExecutor(len(started)) as pool:
            list(pool.map(lambda s: s.stop(), started.values()))


@pytest.fixture(scope="module")
def models(model_dirs: dict[int, Path]) -> dict[int, Any]:
    """The same stand-in models in this process, for the expected samples."""
    if str(FAKES) not in sys.path:
        sys.path.insert(0, str(FAKES))
    module = importlib.import_module("cosyvoice.cli.cosyvoice")
    assert str(FAKES) in str(module.__file__), "a real cosyvoice package shadows the stand-in"
    model_module = importlib.import_module("cosyvoice.cli.model")
    model_module.POLL_S, model_module.TOKEN_S = 0.005, 0.0002
    v2 = module.AutoModel(model_dir=str(model_dirs[2]))
    # What the stand-in server registers as upstream's cached speaker "001".
    default = PromptAudio(default_prompt(), 16000).wav(16000)
    v2.add_zero_shot_spk(DEFAULT_PROMPT_TEXT, io.BytesIO(default), "001")
    return {2: v2, 3: module.AutoModel(model_dir=str(model_dirs[3]))}


def expected_zero_shot(model: Any, tts_text: str, prompt_text: str) -> np.ndarray:
    wav = io.BytesIO(PROMPT.wav(16000))
    return direct(model.inference_zero_shot(tts_text, prompt_text, wav, stream=False))


# -- the stand-in speaks Triton ---------------------------------------------------------


def test_upstream_client_http_request_shape(
    servers: dict[str, FakeServer], models: dict[int, Any]
) -> None:
    """A request built like client_http.py's prepare_request, posted like its main."""
    waveform = PROMPT.at_rate(16000)
    lengths = np.array([[len(waveform)]], dtype=np.int32)
    samples = waveform.reshape(1, -1).astype(np.float32)
    data = {
        "inputs": [
            {
                "name": "reference_wav",
                "shape": samples.shape,
                "datatype": "FP32",
                "data": samples.tolist(),
            },
            {
                "name": "reference_wav_len",
                "shape": lengths.shape,
                "datatype": "INT32",
                "data": lengths.tolist(),
            },
            {
                "name": "reference_text",
                "shape": [1, 1],
                "datatype": "BYTES",
                "data": [CLIENT_REFERENCE],
            },
            {"name": "target_text", "shape": [1, 1], "datatype": "BYTES", "data": [CLIENT_TARGET]},
        ]
    }
    response = httpx.post(
        f"{servers['main'].url}/v2/models/cosyvoice2/infer",
        headers={"Content-Type": "application/json"},
        json=data,
        params={"request_id": "0"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    result = response.json()
    assert result["model_name"] == "cosyvoice2"
    assert result["outputs"][0]["name"] == "waveform"
    assert result["outputs"][0]["datatype"] == "FP32"
    audio = np.array(result["outputs"][0]["data"], dtype=np.float32)
    assert result["outputs"][0]["shape"] == [1, audio.size]
    assert_same_audio(audio, expected_zero_shot(models[2], CLIENT_TARGET, CLIENT_REFERENCE))


def test_binary_tensor_extension(servers: dict[str, FakeServer], models: dict[int, Any]) -> None:
    """Every input binary (BYTES as length-prefixed strings), outputs binary by
    the request-level binary_data_output parameter."""
    wav = PROMPT.at_rate(16000).astype("<f4").tobytes()

    def text(value: str) -> bytes:
        raw = value.encode("utf-8")
        return len(raw).to_bytes(4, "little") + raw

    blobs = [
        wav,
        np.array([len(wav) // 4], dtype="<i4").tobytes(),
        text(PROMPT.text or ""),
        text(CLIENT_TARGET),
    ]
    names = [
        ("reference_wav", "FP32", [1, len(wav) // 4]),
        ("reference_wav_len", "INT32", [1, 1]),
        ("reference_text", "BYTES", [1, 1]),
        ("target_text", "BYTES", [1, 1]),
    ]
    header = json.dumps(
        {
            "id": "bin-1",
            "parameters": {"binary_data_output": True},
            "inputs": [
                {"name": n, "datatype": t, "shape": s, "parameters": {"binary_data_size": len(b)}}
                for (n, t, s), b in zip(names, blobs, strict=True)
            ],
        }
    ).encode()
    response = httpx.post(
        f"{servers['main'].url}/v2/models/cosyvoice2/infer",
        content=header + b"".join(blobs),
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Accept-Encoding": "identity",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    head = json.loads(response.content[:length])
    assert head["id"] == "bin-1"
    (output,) = head["outputs"]
    assert "data" not in output
    audio = np.frombuffer(response.content[length:], dtype="<f4")
    assert output["parameters"]["binary_data_size"] == audio.size * 4
    assert output["shape"] == [1, audio.size]
    expected = expected_zero_shot(models[2], CLIENT_TARGET, PROMPT.text or "")
    assert_same_audio(audio.astype(np.float32), expected)


def test_errors_are_triton_shaped(servers: dict[str, FakeServer]) -> None:
    base = servers["main"].url

    def text_input(name: str, shape: list[int]) -> dict[str, Any]:
        return {"inputs": [{"name": name, "shape": shape, "datatype": "BYTES", "data": ["x"]}]}

    only_reference = text_input("reference_text", [1, 1])
    cases = [
        ("cosyvoice2", only_reference, 400, "target_text"),
        ("cosyvoice2", text_input("target_text", [1]), 400, "unexpected shape"),
        ("cosyvoice2", text_input("speaker", [1, 1]), 400, "unexpected inference input"),
        ("nope", only_reference, 404, "unknown model"),
        ("streaming", only_reference, 501, "decoupled"),
    ]
    for model, body, status, words in cases:
        response = httpx.post(f"{base}/v2/models/{model}/infer", json=body, timeout=10)
        assert response.status_code == status, (model, body, response.text)
        assert words in response.json()["error"]
    assert httpx.get(f"{base}/v2/models/nope/ready").status_code == 400
    assert httpx.get(f"{base}/v2/health/live").status_code == 200
    assert "binary_tensor_data" in httpx.get(f"{base}/v2").json()["extensions"]


# -- the engine ---------------------------------------------------------------------


async def test_zero_shot_equals_the_model(
    servers: dict[str, FakeServer], models: dict[int, Any]
) -> None:
    async with running(servers["main"].url) as engine:
        assert engine.capabilities.streaming is False
        assert engine.capabilities.sample_rate == 24000
        assert engine.capabilities.modes == {Mode.ZERO_SHOT, Mode.SFT}
        assert engine.capabilities.prompt_modes == {Mode.ZERO_SHOT}
        request = zero_shot(TEXT)
        assert len(request.segments) > 1
        got = by_segment(await synthesize(engine, request))
    assert sorted(got) == [s.index for s in request.segments]
    for segment in request.segments:
        expected = expected_zero_shot(models[2], segment.text, PROMPT.text or "")
        assert_same_audio(got[segment.index], expected)


async def test_binary_and_json_agree(servers: dict[str, FakeServer]) -> None:
    request = zero_shot(TEXT)
    results = {}
    for binary in (True, False):
        async with running(servers["main"].url, binary=binary) as engine:
            assert engine.describe()["encoding"] == ("binary" if binary else "json")
            chunks = await synthesize(engine, request)
        results[binary] = np.concatenate([c.samples for c in chunks])
    assert results[True].size > 0
    assert np.array_equal(results[True], results[False])


async def test_sft_uses_the_servers_default_speaker(
    servers: dict[str, FakeServer], models: dict[int, Any]
) -> None:
    async with running(servers["main"].url) as engine:
        (speaker,) = engine.speakers()
        assert speaker.id == "default"
        request = EngineRequest("t", Mode.SFT, segments(TEXT), speaker)
        got = by_segment(await synthesize(engine, request))
    for segment in request.segments:
        expected = direct(
            models[2].inference_zero_shot(segment.text, "", None, zero_shot_spk_id="001")
        )
        assert_same_audio(got[segment.index], expected)
        imitated = expected_zero_shot(models[2], segment.text, PROMPT.text or "")
        assert not np.allclose(got[segment.index], imitated), "sft spoke with the prompt's voice"


async def test_cosyvoice3_sends_its_prompt_prefix(
    servers: dict[str, FakeServer], models: dict[int, Any]
) -> None:
    async with running(servers["main"].url, model="cosyvoice3") as engine:
        assert engine.profile.version == 3
        assert engine.capabilities.modes == {Mode.ZERO_SHOT}
        (text,) = engine.tensors(zero_shot("Hi."), segments("Hi.")[0])[2].values
        assert text == V3_PREFIX + (PROMPT.text or "")
        request = zero_shot(TEXT)
        got = by_segment(await synthesize(engine, request))
    for segment in request.segments:
        expected = expected_zero_shot(models[3], segment.text, V3_PREFIX + (PROMPT.text or ""))
        assert_same_audio(got[segment.index], expected)


async def test_retries_only_before_the_answer(servers: dict[str, FakeServer]) -> None:
    """The flaky server fails its first four inferences: with retries=1 both
    attempts fail; then with retries=2, two more fail and the third answers."""
    request = zero_shot("你好，世界。")
    async with running(servers["flaky"].url, retries=1) as engine:
        with pytest.raises(UpstreamError) as failed:
            await synthesize(engine, request)
        assert failed.value.code == "upstream_error"
        assert "after 2 attempts" in failed.value.message
        assert engine.stats.failed == 1
    async with running(servers["flaky"].url, retries=2) as engine:
        chunks = await synthesize(engine, request)
        assert engine.stats.completed == 1
    async with running(servers["main"].url) as engine:
        reference = await synthesize(engine, request)
    assert np.array_equal(chunks[0].samples, reference[0].samples)


async def test_server_down_is_engine_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with running(url, retries=1, connect_timeout_s=1) as engine:
        assert engine.health.ok is False
        with pytest.raises(EngineUnavailable) as failed:
            await synthesize(engine, zero_shot("你好。"))
    assert failed.value.code == "engine_unavailable"
    assert url in failed.value.message


async def test_stall_longer_than_read_timeout_is_engine_timeout(
    servers: dict[str, FakeServer],
) -> None:
    async with running(servers["stalled"].url, read_timeout_s=0.5, retries=0) as engine:
        assert engine.health.ok is True  # the probes do not stall, inference does
        with pytest.raises(EngineTimeout) as failed:
            await synthesize(engine, zero_shot("你好。"))
    assert failed.value.code == "engine_timeout"


async def test_health_reflects_the_server(
    servers: dict[str, FakeServer], model_dirs: dict[int, Path], tmp_path: Path
) -> None:
    async with running(servers["main"].url) as engine:
        assert engine.health.ok is True
        assert engine.describe()["health"]["ok"] is True
    async with running(servers["main"].url, model="nope") as engine:
        assert engine.health.ok is False
        assert "'nope' is not ready" in (engine.health.error or "")
    async with running(servers["main"].url, model="streaming", retries=2) as engine:
        assert engine.health.ok is False
        assert "decoupled" in (engine.health.error or "")
        with pytest.raises(UpstreamError) as refused:
            await synthesize(engine, zero_shot("你好。"))
        assert "after 1 attempt:" in refused.value.message  # a 501 is not retried
    # A server that comes and goes.
    port = free_port()
    async with running(f"http://127.0.0.1:{port}", retries=0) as engine:
        assert engine.health.ok is False
        args = ["--model", f"cosyvoice2={model_dirs[2]}"]
        server = FakeServer(MODULE, args, tmp_path, port=port)
        await asyncio.to_thread(server.start)
        try:
            assert (await engine.check_health()).ok is True
            assert await synthesize(engine, zero_shot("你好。"))
        finally:
            await asyncio.to_thread(server.stop)
        health = await engine.check_health()
        assert health.ok is False
        assert health.failures == 1


def test_options_are_checked() -> None:
    assert factory_for("cosyvoice-triton") is CosyVoiceTritonEngine
    engine = CosyVoiceTritonEngine(url="http://triton:8000", model="cosyvoice3")
    assert engine.profile.version == 3
    assert engine.speakers() == ()
    assert CosyVoiceTritonEngine(url="http://t:8000", speaker="narrator").speakers()[0].id == (
        "narrator"
    )
    sft_only = CosyVoiceTritonEngine(url="http://t:8000", modes=["sft"])
    assert sft_only.capabilities.modes == {Mode.SFT}
    assert sft_only.capabilities.prompt_modes == frozenset()
    assert CosyVoiceTritonEngine(url="http://t:8000", binary="false").binary is False
    assert CosyVoiceTritonEngine(url="http://t:8000", modes="zero_shot").speakers() == ()
    with pytest.raises(ValueError, match="cannot do sft"):
        CosyVoiceTritonEngine(url="http://t:8000", model="cosyvoice3", modes=["sft"])
    with pytest.raises(ValueError, match="cannot do instruct"):
        CosyVoiceTritonEngine(url="http://t:8000", modes=["zero_shot", "instruct"])
    with pytest.raises(ValueError, match="2 and 3 only"):
        CosyVoiceTritonEngine(url="http://t:8000", version=1)
    with pytest.raises(TypeError, match="unknown options"):
        CosyVoiceTritonEngine(url="http://t:8000", speakers=["a"])
