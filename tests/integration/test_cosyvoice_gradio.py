"""The ``cosyvoice-gradio`` engine against a real Gradio app laid out like
CosyVoice's web UI (tests/fakes/official/webui.py), on the stand-in model.

The audio takes Gradio's real path: each model chunk is peak-normalized,
AAC-encoded by ffmpeg and served as an HLS playlist, which the engine follows
and decodes. So the checks compare shape and timing with what the stand-in
produces for the same texts (correlation and length, tolerant of AAC's loss
and Gradio's gain), and show that the same measure tells wrong audio apart.
One app serves the module; its fault knobs are set per test through its
``/faults`` endpoint, which also counts the calls it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.fakes.modeldirs import BUILTIN_SPEAKERS, make_model_dir
from tests.support.procs import FAKES, FakeServer
from voxgate.audio.prompt import PromptAudio
from voxgate.engines.base import AudioChunk, EngineRequest, Mode, Speaker
from voxgate.engines.cosyvoice.gradio import CosyVoiceGradioEngine, classify, dropdown_choices
from voxgate.engines.cosyvoice.texts import prompt_wav, upstream_texts
from voxgate.errors import EngineTimeout, EngineUnavailable, UpstreamError
from voxgate.testing import free_port
from voxgate.text.markup import Text, parse
from voxgate.text.script import Script
from voxgate.text.split import Segment, split

RATE = 22050  # v1
EXTRA_SPEAKER = "客服小王"  # a fine-tuned speaker only the UI knows about
LONG = (
    "收到好友从远方寄来的生日礼物，那份意外的惊喜与深深的祝福让我心中充满了甜蜜的快乐，"
    "笑容如花儿般绽放。"
)
SHORT = "你好，欢迎使用语音合成。"
PROMPT_TEXT = "希望你以后能够做的比我还好呦。"
FAST = {"retries": 2, "backoff_s": 0.05, "backoff_max_s": 0.1, "connect_timeout_s": 2.0}


# -- the app, the stand-in in-process, and helpers ------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("webui-model")
    return make_model_dir(root, 1, speakers=[*BUILTIN_SPEAKERS, EXTRA_SPEAKER])


@pytest.fixture(scope="module")
def webui(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeServer]:
    workdir = tmp_path_factory.mktemp("webui")
    server = FakeServer(
        "fakes.official.webui",
        ["--model_dir", str(model_dir)],
        workdir,
        env={"GRADIO_TEMP_DIR": str(workdir / "gradio")},  # its caches, uploads
    )
    server.start(timeout=90)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def control(webui: FakeServer) -> Iterator[Any]:
    """A plain gradio_client, to keep the UI busy."""
    from gradio_client import Client

    client = Client(webui.url, verbose=False, download_files=False)
    yield client
    client.close()


CALM = {"fail_first": 0, "error_after_chunks": 0, "chunk_delay_s": 0, "hold_after_chunks": -1}


async def faults(webui: FakeServer, **knobs: float) -> dict[str, Any]:
    """Set the app's knobs (outside its queue, so even when it is full)."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{webui.url}/gradio_api/run/faults", json={"data": [json.dumps(knobs)]}
        )
    response.raise_for_status()
    return dict(json.loads(response.json()["data"][0]))


async def until(webui: FakeServer, key: str, value: int, within_s: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while (await faults(webui))[key] != value:
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.fixture
async def calm(webui: FakeServer) -> AsyncIterator[None]:
    """Every test starts and ends with the app fault-free and idle."""
    await faults(webui, **CALM)
    yield
    await faults(webui, **CALM)
    await until(webui, "active", 0)


@contextlib.asynccontextmanager
async def running(url: str, **options: Any) -> AsyncIterator[CosyVoiceGradioEngine]:
    engine = CosyVoiceGradioEngine("webui", url=url, **{"version": 1, **FAST, **options})
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture
def stand_in(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stand-in model in this process, for the audio the UI should have
    produced; its polling made fast for this test (its output does not depend
    on timing)."""
    monkeypatch.syspath_prepend(str(FAKES))
    from cosyvoice.cli import model
    from cosyvoice.cli.cosyvoice import AutoModel

    assert str(FAKES) in str(model.__file__)
    monkeypatch.setattr(model, "POLL_S", 0.001)
    monkeypatch.setattr(model, "TOKEN_S", 0.0)
    return AutoModel(model_dir=str(model_dir))


def as_the_ui_sends(outputs: Iterator[dict[str, Any]]) -> np.ndarray:
    """The model's chunks as Gradio turns them into audio: each scaled to full scale."""
    chunks = [o["tts_speech"].numpy().reshape(-1) for o in outputs]
    return np.concatenate([c / np.abs(c).max() for c in chunks if c.size]).astype(np.float32)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    x, y = a[:n].astype(np.float64), b[:n].astype(np.float64)
    return float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))


def assert_same_audio(got: np.ndarray, expected: np.ndarray) -> None:
    # AAC ends on a whole 1024-sample frame after the audio: never shorter.
    assert 0 <= len(got) - len(expected) < 2048, (len(got), len(expected))
    assert correlation(got, expected) > 0.95
    assert np.abs(got).max() <= 1.0


def segments(text: str) -> tuple[Segment, ...]:
    return tuple(split(parse(text)))


def voice_prompt(seconds: float = 3.0, rate: int = 16000) -> PromptAudio:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    samples = 0.3 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 0.7 * t)) * t)
    samples *= 0.6 + 0.4 * np.sin(2 * np.pi * 2.1 * t) ** 2
    return PromptAudio(samples.astype(np.float32), rate, text=PROMPT_TEXT)


def request(
    text: str,
    mode: Mode,
    *,
    speaker: str | None = None,
    prompt: PromptAudio | None = None,
    instruct: str | None = None,
    language: str | None = None,
) -> EngineRequest:
    return EngineRequest(
        request_id="r",
        mode=mode,
        segments=segments(text),
        speaker=Speaker(speaker, speaker, "zh") if speaker else None,
        prompt=prompt,
        instruct=instruct,
        language=language,
    )


async def collect(engine: CosyVoiceGradioEngine, req: EngineRequest) -> list[AudioChunk]:
    return [chunk async for chunk in engine.synthesize(req)]


def joined(chunks: list[AudioChunk]) -> np.ndarray:
    return np.concatenate([c.samples for c in chunks])


# -- audio through the UI is the model's ----------------------------------------


async def test_sft_audio_is_the_models_and_speakers_come_from_the_ui(
    webui: FakeServer, stand_in: Any, calm: None
) -> None:
    async with running(webui.url, modes=["sft", "instruct"]) as engine:
        names = [s.id for s in engine.speakers()]
        assert names == [*BUILTIN_SPEAKERS, EXTRA_SPEAKER]  # not the v1 default list
        assert engine.capabilities.sample_rate == RATE
        assert engine.health.ok is True
        chunks = await collect(engine, replace(request(LONG, Mode.SFT, speaker="中文男"), seed=7))
    assert (await faults(webui))["last"] == {
        "tts_text": LONG, "mode": "预训练音色", "speaker": "中文男", "prompt_text": "",
        "prompt_wav_upload": False, "prompt_wav_record": False, "instruct_text": "",
        "seed": 7, "stream": True, "speed": 1,
    }  # fmt: skip
    expected = as_the_ui_sends(stand_in.inference_sft(LONG, "中文男", stream=True))
    got = joined(chunks)
    assert_same_audio(got, expected)
    # The measure tells other audio apart: the same voice saying the text backwards.
    # (The stand-in's built-in speakers all sound alike, so a speaker mix-up would not.)
    other = as_the_ui_sends(stand_in.inference_sft(LONG[::-1], "中文男", stream=True))
    assert correlation(got, other) < 0.5
    assert {c.segment for c in chunks} == {0}


@pytest.mark.parametrize("mode", [Mode.ZERO_SHOT, Mode.CROSS_LINGUAL])
async def test_prompted_modes_upload_the_prompt(
    webui: FakeServer, stand_in: Any, calm: None, mode: Mode
) -> None:
    prompt = voice_prompt()
    req = request(SHORT, mode, prompt=prompt, language="zh")
    async with running(webui.url) as engine:
        got = joined(await collect(engine, req))
    texts = upstream_texts(1, req, req.segments[0])
    last = (await faults(webui))["last"]
    assert last["mode"] == {Mode.ZERO_SHOT: "3s极速复刻", Mode.CROSS_LINGUAL: "跨语种复刻"}[mode]
    assert last["prompt_wav_upload"] is True
    assert last["prompt_text"] == (PROMPT_TEXT if mode == Mode.ZERO_SHOT else "")
    wav = prompt_wav(req)
    if mode == Mode.ZERO_SHOT:
        outputs = stand_in.inference_zero_shot(
            texts.tts_text, texts.prompt_text, io.BytesIO(wav), stream=True
        )
    else:
        assert texts.tts_text.startswith("<|zh|>")
        outputs = stand_in.inference_cross_lingual(texts.tts_text, io.BytesIO(wav), stream=True)
    assert_same_audio(got, as_the_ui_sends(outputs))
    # A quieter prompt is another voice to the model: the audio must differ.
    quiet = PromptAudio(prompt.samples * 0.3, prompt.sample_rate, text=prompt.text)
    other_wav = prompt_wav(request(SHORT, mode, prompt=quiet))
    other = as_the_ui_sends(
        stand_in.inference_zero_shot(texts.tts_text, texts.prompt_text, io.BytesIO(other_wav),
                                  stream=True)
        if mode == Mode.ZERO_SHOT
        else stand_in.inference_cross_lingual(texts.tts_text, io.BytesIO(other_wav), stream=True)
    )  # fmt: skip
    assert correlation(got, other) < 0.5


async def test_instruct_on_v1_sends_speaker_and_instruction(
    webui: FakeServer, stand_in: Any, calm: None
) -> None:
    req = request(SHORT, Mode.INSTRUCT, speaker="中文女", instruct="用开心的语气说")
    async with running(webui.url, modes=["sft", "instruct"]) as engine:
        assert Mode.INSTRUCT in engine.capabilities.modes
        got = joined(await collect(engine, req))
    texts = upstream_texts(1, req, req.segments[0])
    assert texts.instruct_text == "用开心的语气说<|endofprompt|>"
    last = (await faults(webui))["last"]
    assert (last["mode"], last["speaker"]) == ("自然语言控制", "中文女")
    assert last["instruct_text"] == texts.instruct_text
    happy = stand_in.inference_instruct(texts.tts_text, "中文女", texts.instruct_text, stream=True)
    assert_same_audio(got, as_the_ui_sends(happy))
    sad = "用悲伤的语气说<|endofprompt|>"
    other = stand_in.inference_instruct(texts.tts_text, "中文女", sad, stream=True)
    assert correlation(got, as_the_ui_sends(other)) < 0.5


def test_instruct_is_dropped_for_v2_and_v3() -> None:
    for version in (2, 3):
        engine = CosyVoiceGradioEngine(
            url="http://127.0.0.1:1/", version=version, modes=["zero_shot", "instruct"]
        )
        assert engine.capabilities.modes == {Mode.ZERO_SHOT}
        assert engine.capabilities.max_concurrency == 2  # the UI's default_concurrency_limit
    v1 = CosyVoiceGradioEngine(url="http://127.0.0.1:1/", version=1, modes=["sft", "instruct"])
    assert v1.capabilities.modes == {Mode.SFT, Mode.INSTRUCT}
    assert v1.capabilities.streaming is True
    unstreamed = CosyVoiceGradioEngine(url="http://127.0.0.1:1/", version=1, stream=False)
    assert unstreamed.capabilities.streaming is False  # one chunk per model call


def test_a_v2_ui_without_speakers_offers_no_sft() -> None:
    # Upstream's UI lists [''] when the model has no SFT speakers (CosyVoice2-0.5B).
    config = {
        "dependencies": [{"api_name": "generate_audio", "inputs": [3, 5, 7, 18]}],
        "components": [{"id": 7, "type": "dropdown", "props": {"choices": [["", ""]]}}],
    }
    assert dropdown_choices(config, "/generate_audio") == []
    assert dropdown_choices(config, "/synthesize") is None
    engine = CosyVoiceGradioEngine(url="http://127.0.0.1:1/", version=2)
    engine._learned([])
    assert engine.capabilities.modes == {Mode.ZERO_SHOT, Mode.CROSS_LINGUAL}
    assert engine.speakers() == ()
    engine._learned(["spk1"])  # a fine-tuned v2 model with spk2info.pt
    assert engine.capabilities.modes == {Mode.SFT, Mode.ZERO_SHOT, Mode.CROSS_LINGUAL}


# -- streaming and cancellation ---------------------------------------------------


async def test_a_long_segment_streams_in_several_chunks(webui: FakeServer, calm: None) -> None:
    # The model stops after its second chunk (Gradio's encoder holds the first
    # back until the second comes) until the test has heard something.
    await faults(webui, hold_after_chunks=2)
    async with running(webui.url) as engine:
        assert engine.capabilities.streaming is True
        stream = engine.synthesize(request(LONG, Mode.SFT, speaker="中文女"))
        first = await anext(stream)
        assert first.samples.size > 0
        assert (await faults(webui))["active"] == 1  # audio arrived while the UI works
        await faults(webui, hold_after_chunks=-1)
        rest = [chunk async for chunk in stream]
    assert len(rest) >= 1
    total = len(first.samples) + sum(len(c.samples) for c in rest)
    assert 0 <= total - 3 * 2 * RATE < 2048  # the stand-in's three 2-second chunks


async def test_cancel_stops_the_ui_job_and_frees_its_slot(webui: FakeServer, calm: None) -> None:
    await faults(webui, chunk_delay_s=0.3)
    # One segment of three sentences: one UI call, 9 model chunks.
    one_segment = replace(
        request(LONG, Mode.SFT, speaker="中文女"),
        segments=(Segment(0, (Text(LONG * 3),), Script.HAN),),
    )
    async with running(webui.url) as engine:
        before = await faults(webui)
        stream = engine.synthesize(one_segment)
        await anext(stream)
        await stream.aclose()
        assert engine.stats.cancelled == 1
        # The UI stops asking the model for chunks.
        assert await until(webui, "active", 0, within_s=3.0)
        made = (await faults(webui))["chunks"]
        await asyncio.sleep(1.0)  # three more chunks' time, were it still running
        after = await faults(webui)
        assert after["chunks"] == made < before["chunks"] + 9
        assert after["calls"] == before["calls"] + 1  # and nothing was retried
        # Its slot is free again: two calls at once both get in (the UI runs 2).
        await faults(webui, chunk_delay_s=0, hold_after_chunks=0)
        calls = [
            asyncio.create_task(collect(engine, request(SHORT, Mode.SFT, speaker="中文女")))
            for _ in range(2)
        ]
        assert await until(webui, "active", 2, within_s=5.0)
        await faults(webui, hold_after_chunks=-1)
        for call in calls:
            assert joined(await call).size > RATE // 2


async def test_cancelling_one_call_leaves_the_others_alone(
    webui: FakeServer, stand_in: Any, calm: None
) -> None:
    # Gradio cancels every running event of a session at once: calls must not share one.
    await faults(webui, chunk_delay_s=0.2)
    kept_request = replace(
        request(LONG, Mode.SFT, speaker="中文女"),
        segments=(Segment(0, (Text(LONG * 3),), Script.HAN),),
    )
    async with running(webui.url, read_timeout_s=5.0) as engine:
        kept = asyncio.create_task(collect(engine, kept_request))
        dropped = engine.synthesize(request(LONG, Mode.SFT, speaker="中文女"))
        await anext(dropped)
        assert not kept.done()
        await dropped.aclose()
        got = joined(await kept)
        assert engine.stats.completed == 1
        assert engine.stats.cancelled == 1
    assert_same_audio(got, as_the_ui_sends(stand_in.inference_sft(LONG * 3, "中文女", stream=True)))


# -- failures ----------------------------------------------------------------------


async def test_errors_before_audio_are_retried(webui: FakeServer, calm: None) -> None:
    async with running(webui.url, retries=2) as engine:
        before = (await faults(webui, fail_first=2))["calls"]
        chunks = await collect(engine, request(SHORT, Mode.SFT, speaker="中文女"))
        assert joined(chunks).size > RATE // 2
        assert (await faults(webui))["calls"] == before + 3

        before = (await faults(webui, fail_first=3))["calls"]
        with pytest.raises(UpstreamError, match="after 3 attempts") as info:
            await collect(engine, request(SHORT, Mode.SFT, speaker="中文女"))
        assert "injected failure before any audio" in str(info.value)
        assert info.value.code == "upstream_error"
        assert (await faults(webui))["calls"] == before + 3


async def test_no_retry_once_audio_has_left(webui: FakeServer, calm: None) -> None:
    # The model fails after its second chunk, released once audio has left.
    state = await faults(webui, error_after_chunks=2, hold_after_chunks=2)
    received: list[AudioChunk] = []
    async with running(webui.url, retries=3) as engine:

        async def listen() -> None:
            async for chunk in engine.synthesize(request(LONG, Mode.SFT, speaker="中文女")):
                received.append(chunk)
                await faults(webui, hold_after_chunks=-1)

        with pytest.raises(UpstreamError, match="mid-stream"):
            await listen()
        assert engine.stats.failed == 1
    assert received, "some audio came before the failure"
    assert (await faults(webui))["calls"] == state["calls"] + 1


async def test_a_stuck_ui_times_out(webui: FakeServer, calm: None) -> None:
    await faults(webui, hold_after_chunks=0)  # the model hangs before its first chunk
    loop = asyncio.get_running_loop()
    async with running(webui.url, retries=0, read_timeout_s=1.0) as engine:
        started = loop.time()
        with pytest.raises(EngineTimeout, match="no audio from the web UI for 1 s") as info:
            await collect(engine, request(SHORT, Mode.SFT, speaker="中文女"))
        assert loop.time() - started < 5.0  # the engine's read timeout, not the UI's mercy
    assert info.value.code == "engine_timeout"


def submit(control: Any, text: str) -> Any:
    return control.submit(text, "预训练音色", "中文女", "", None, None, "", 0, True, 1.0,
                          api_name="/generate_audio")  # fmt: skip


async def test_a_full_queue_is_unavailable_and_retryable(
    webui: FakeServer, control: Any, calm: None
) -> None:
    from gradio_client.utils import QueueError

    failure = classify(QueueError("Queue is full! Please try again."))
    assert (failure.kind, failure.retryable) == ("unavailable", True)

    await faults(webui, hold_after_chunks=0)  # calls wait before their first chunk
    async with running(webui.url, retries=0) as engine:
        # Fill the UI: 2 running (default_concurrency_limit), 4 waiting (max_size).
        blockers = [submit(control, LONG) for _ in range(2)]
        try:
            assert await until(webui, "active", 2)
            blockers += [submit(control, LONG) for _ in range(4)]
            for _ in range(200):
                if all(job.status().code.value in ("IN_QUEUE", "PROCESSING") for job in blockers):
                    break
                await asyncio.sleep(0.05)
            with pytest.raises(EngineUnavailable, match="queue is full") as info:
                await collect(engine, request(SHORT, Mode.SFT, speaker="中文女"))
            assert info.value.retry_after
        finally:
            await faults(webui, hold_after_chunks=-1)
            await asyncio.gather(*(asyncio.to_thread(job.cancel) for job in blockers))


async def test_a_ui_that_is_down_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    async with running(url, retries=1) as engine:
        assert engine.health.ok is False
        assert engine.health.error
        with pytest.raises(EngineUnavailable, match="not reachable after 2 attempts") as info:
            await collect(engine, request(SHORT, Mode.SFT, speaker="中文女"))
    assert info.value.code == "engine_unavailable"
    assert url in str(info.value)


class Proxy:
    """A TCP forwarder we can take down and bring back, in front of the UI."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_health_follows_the_ui(webui: FakeServer, calm: None) -> None:
    proxy = Proxy(webui.port)
    await proxy.up()
    try:
        async with running(proxy.url) as engine:
            assert engine.health.ok is True
            assert engine.describe()["health"]["ok"] is True

            await proxy.down()
            health = await engine.check_health()
            assert health.ok is False
            assert health.failures == 1
            with pytest.raises(EngineUnavailable):
                await collect(engine, request(SHORT, Mode.SFT, speaker="中文女"))

            await proxy.up()
            health = await engine.check_health()
            assert health.ok is True
            assert health.error is None
            chunks = await collect(engine, request(SHORT, Mode.SFT, speaker="中文女"))
            assert joined(chunks).size > RATE // 2
    finally:
        await proxy.down()


async def test_an_app_without_the_endpoint_is_unhealthy(webui: FakeServer) -> None:
    async with running(webui.url, api_name="/synthesize", retries=0) as engine:
        assert engine.health.ok is False
        assert "/synthesize" in (engine.health.error or "")


async def test_without_gradio_client_start_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gradio_client", None)
    engine = CosyVoiceGradioEngine(url="http://127.0.0.1:1/", version=1)
    with pytest.raises(EngineUnavailable, match="gradio_client") as info:
        await engine.start()
    assert "voxgate[gradio]" in (info.value.hint or "")
