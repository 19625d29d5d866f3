"""The in-process ``cosyvoice`` engine on the stand-in upstream package.

The stand-in (tests/fakes/cosyvoice) follows upstream's signatures, generator
behaviour, tensor shapes and sample rates, and reproduces the bugs the
adapter guards against, so these tests show the guards work: outputs are
compared with calling the stand-in directly the way upstream documents.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.fakes.modeldirs import make_model_dir
from tests.support.cosyvoice import (
    collect,
    direct,
    eventually,
    join,
    make_fast,
    request,
    stand_in,
    voice_prompt,
)
from tests.support.procs import FAKES
from voxgate.engines.base import Mode
from voxgate.engines.cosyvoice.local import CosyVoiceEngine
from voxgate.errors import EngineError, EngineUnavailable, RequestError
from voxgate.text.cosyvoice_syntax import V3_PREFIX
from voxgate.text.markup import Feature

TEXT = (
    "收到好友从远方寄来的生日礼物，那份意外的惊喜与深深的祝福让我心中充满了甜蜜的快乐。"
    "笑容如花儿般绽放。"
)
HOP = 25  # CosyVoice2Model.token_hop_len as loaded
SAMPLES_PER_TOKEN = 24000 // 25


async def started(model_dir: Path, **options: object) -> CosyVoiceEngine:
    engine = CosyVoiceEngine("cv", model_dir=str(model_dir), repo_dir=str(FAKES), **options)  # type: ignore[arg-type]
    await engine.start()
    make_fast()
    return engine


@pytest.fixture
async def v2(tmp_path: Path) -> AsyncIterator[CosyVoiceEngine]:
    engine = await started(make_model_dir(tmp_path, 2), concurrency=3)
    yield engine
    await engine.close()


# -- loading -------------------------------------------------------------------


def test_a_hub_id_is_refused_with_the_download_command() -> None:
    with pytest.raises(ValueError, match="never downloads") as info:
        CosyVoiceEngine(model_dir="iic/CosyVoice2-0.5B")
    assert "modelscope download --model iic/CosyVoice2-0.5B" in str(info.value)


def test_a_directory_without_a_model_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a CosyVoice model directory"):
        CosyVoiceEngine(model_dir=str(tmp_path))


async def test_load_flags_are_passed_where_the_version_takes_them(tmp_path: Path) -> None:
    engine = await started(
        make_model_dir(tmp_path, 2), load_jit=True, load_trt=True, load_vllm=True, fp16=True
    )
    requested = engine._model.requested_flags
    flags = {"load_jit": True, "load_trt": True, "load_vllm": True, "fp16": True}
    assert requested == {**flags, "trt_concurrent": 1}  # as given; upstream's own default
    await engine.close()


async def test_a_flag_the_version_lacks_is_a_configuration_error(tmp_path: Path) -> None:
    engine = CosyVoiceEngine(
        "cv", model_dir=str(make_model_dir(tmp_path, 3)), repo_dir=str(FAKES), load_jit=True
    )
    with pytest.raises(EngineUnavailable, match=r"CosyVoice3 does not take \['load_jit'\]"):
        await engine.start()


def test_unknown_options_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown options"):
        CosyVoiceEngine(model_dir=".", load_everything=True)


async def test_missing_upstream_package_says_how_to_install(tmp_path: Path) -> None:
    engine = CosyVoiceEngine("cv", model_dir=str(make_model_dir(tmp_path, 2)), repo_dir=None)
    engine._import_upstream = lambda: (_ for _ in ()).throw(  # type: ignore[method-assign]
        EngineUnavailable("cannot import upstream CosyVoice", hint="Install upstream")
    )
    with pytest.raises(EngineUnavailable, match="cannot import"):
        await engine.start()


@pytest.mark.parametrize(
    ("version", "dirname", "modes", "rate"),
    [
        (1, "CosyVoice-300M-SFT", {Mode.SFT}, 22050),
        (1, "CosyVoice-300M-Instruct", {Mode.SFT, Mode.INSTRUCT}, 22050),
        (1, "CosyVoice-300M", {Mode.SFT, Mode.ZERO_SHOT, Mode.CROSS_LINGUAL}, 22050),
        (2, "CosyVoice2-0.5B", {Mode.ZERO_SHOT, Mode.CROSS_LINGUAL, Mode.INSTRUCT}, 24000),
        (3, "Fun-CosyVoice3-0.5B", {Mode.ZERO_SHOT, Mode.CROSS_LINGUAL, Mode.INSTRUCT}, 24000),
    ],
)
async def test_capabilities_follow_the_model(
    tmp_path: Path, version: int, dirname: str, modes: set[Mode], rate: int
) -> None:
    path = make_model_dir(tmp_path, version)
    path = path.rename(path.parent / dirname)
    engine = await started(path)
    caps = engine.capabilities
    assert set(caps.modes) == modes
    assert caps.sample_rate == rate == engine._model.sample_rate
    assert caps.speed_range is None  # voxgate stretches tempo itself
    assert (Feature.PINYIN in caps.markup) is (version == 3)
    assert (Mode.INSTRUCT in caps.prompt_modes) is (version >= 2)
    assert [s.id for s in engine.speakers()] == (
        ["中文女", "中文男", "日语男", "粤语女", "英文女", "英文男", "韩语女"]
        if version == 1
        else []
    )
    await engine.close()


# -- the hop-length drift ---------------------------------------------------------


def first_chunk_tokens(chunks: list) -> int:  # type: ignore[type-arg]
    return len(chunks[0].samples) // SAMPLES_PER_TOKEN


async def test_the_stand_in_reproduces_the_drift(tmp_path: Path) -> None:
    """Called directly, upstream's shared hop length grows across requests."""
    module = stand_in()
    model = module.AutoModel(model_dir=str(make_model_dir(tmp_path, 2)))
    make_fast()
    wav = voice_prompt().wav(16000)
    firsts = []
    for _ in range(3):
        outputs = list(model.inference_zero_shot(TEXT, "提示", io.BytesIO(wav), stream=True))
        firsts.append(outputs[0]["tts_speech"].shape[1] // SAMPLES_PER_TOKEN)
    assert firsts[0] == HOP
    assert firsts[1] > HOP  # the bug: the second request starts where the first ended
    assert model.model.token_hop_len == 4 * HOP


async def test_every_request_starts_from_the_pristine_hop_length(v2: CosyVoiceEngine) -> None:
    prompt = voice_prompt()
    for i in range(4):
        chunks = await collect(v2, request(TEXT, Mode.ZERO_SHOT, prompt=prompt, request_id=f"s{i}"))
        assert first_chunk_tokens(chunks) == HOP
        assert len({c.segment for c in chunks}) == 2  # both sentences, each from the start
    assert v2._model.model.token_hop_len == HOP  # the shared model was never written


async def test_concurrent_streams_do_not_disturb_each_other(v2: CosyVoiceEngine) -> None:
    prompt = voice_prompt()
    results = await asyncio.gather(
        *(
            collect(v2, request(TEXT, Mode.ZERO_SHOT, prompt=prompt, request_id=f"c{i}"))
            for i in range(3)
        )
    )
    assert [first_chunk_tokens(chunks) for chunks in results] == [HOP, HOP, HOP]
    audio = [join(chunks) for chunks in results]
    assert all(np.array_equal(audio[0], a) for a in audio[1:])
    assert v2._model.model.tts_speech_token_dict == {}  # no per-request state left behind


# -- texts and prompts -------------------------------------------------------------


async def test_v3_output_equals_upstream_with_the_documented_prefixes(tmp_path: Path) -> None:
    engine = await started(make_model_dir(tmp_path, 3))
    prompt = voice_prompt()
    text = "八百标兵奔北坡，北坡炮兵并排跑。"
    got = join(await collect(engine, request(text, Mode.ZERO_SHOT, prompt=prompt)))
    model = stand_in().AutoModel(model_dir=engine._model.model_dir)
    wav = prompt.wav(16000)
    want = direct(model.inference_zero_shot(text, V3_PREFIX + prompt.text, io.BytesIO(wav)))
    unprefixed = direct(model.inference_zero_shot(text, prompt.text, io.BytesIO(wav)))
    assert np.array_equal(got, want)
    assert not np.array_equal(got, unprefixed)  # the prefix reached the model

    cross = join(await collect(engine, request(text, Mode.CROSS_LINGUAL, prompt=prompt)))
    assert np.array_equal(
        cross, direct(model.inference_cross_lingual(V3_PREFIX + text, io.BytesIO(wav)))
    )
    await engine.close()


async def test_long_text_with_tags_is_split_by_voxgate(tmp_path: Path) -> None:
    """v3 cross-lingual text carries <|endofprompt|>, so upstream would not
    split it: voxgate sends one call per segment instead."""
    engine = await started(make_model_dir(tmp_path, 3))
    text = "在他讲述那个荒诞故事的过程中，他突然[laughter]停下来，因为他自己也被逗笑了。" * 6
    chunks = await collect(engine, request(text, Mode.CROSS_LINGUAL, prompt=voice_prompt()))
    assert len({c.segment for c in chunks}) >= 5
    module = stand_in()
    assert module.CosyVoice3  # upstream keeps such text whole:
    fe = engine._model.frontend
    assert fe.text_normalize(V3_PREFIX + text, split=True) == [V3_PREFIX + text]
    await engine.close()


async def test_instruct_with_a_registered_voice_keeps_the_instruction(v2: CosyVoiceEngine) -> None:
    """Upstream ignores the instruction when instruct2 gets a cached speaker id:
    voxgate passes the prompt audio for instruct, so the instruction counts."""
    prompt = voice_prompt(voice_id="v1")
    calm = join(
        await collect(v2, request(TEXT, Mode.INSTRUCT, prompt=prompt, instruct="用平静的语气"))
    )
    sad = join(
        await collect(v2, request(TEXT, Mode.INSTRUCT, prompt=prompt, instruct="用悲伤的语气"))
    )
    assert not np.array_equal(calm, sad)

    model = stand_in().AutoModel(model_dir=v2._model.model_dir)
    wav = prompt.wav(16000)
    want = direct(model.inference_instruct2(TEXT, "用悲伤的语气<|endofprompt|>", io.BytesIO(wav)))
    assert np.array_equal(sad, want)
    model.add_zero_shot_spk(prompt.text, io.BytesIO(wav), "cached")
    buggy = direct(
        model.inference_instruct2(
            TEXT, "用悲伤的语气<|endofprompt|>", "", zero_shot_spk_id="cached"
        )
    )
    assert not np.array_equal(sad, buggy)  # what upstream's cached path would have said


async def test_registered_voice_features_are_extracted_once(v2: CosyVoiceEngine) -> None:
    frontend = v2._model.frontend
    prompt = voice_prompt(voice_id="narrator")
    first = join(await collect(v2, request(TEXT, Mode.ZERO_SHOT, prompt=prompt, request_id="a")))
    before = frontend.extractions
    again = join(await collect(v2, request(TEXT, Mode.ZERO_SHOT, prompt=prompt, request_id="b")))
    await collect(v2, request(TEXT, Mode.CROSS_LINGUAL, prompt=prompt, request_id="c"))
    assert frontend.extractions == before  # served from the cached features
    assert np.array_equal(first, again)
    model = stand_in().AutoModel(model_dir=v2._model.model_dir)
    wav = prompt.wav(16000)
    uncached = direct(model.inference_zero_shot(TEXT, prompt.text, io.BytesIO(wav)))
    assert np.array_equal(first, uncached)  # caching changes the cost, not the audio


async def test_a_request_prompt_is_extracted_once_not_per_segment(v2: CosyVoiceEngine) -> None:
    frontend = v2._model.frontend
    before = frontend.extractions
    chunks = await collect(v2, request(TEXT * 2, Mode.ZERO_SHOT, prompt=voice_prompt()))
    assert len({c.segment for c in chunks}) == 4
    assert frontend.extractions - before == 1
    assert not any(k.startswith("voxgate-request:") for k in frontend.spk2info)  # cleaned up


async def test_the_voice_cache_is_bounded(tmp_path: Path) -> None:
    engine = await started(make_model_dir(tmp_path, 2), cached_voices=2)
    for i in range(5):
        await collect(engine, request(TEXT, Mode.ZERO_SHOT, prompt=voice_prompt(voice_id=f"v{i}")))
    assert len(engine._model.frontend.spk2info) == 2
    await engine.close()


async def test_zero_shot_without_a_transcript_is_a_clear_error(v2: CosyVoiceEngine) -> None:
    with pytest.raises(RequestError) as info:
        v2.check(request(TEXT, Mode.ZERO_SHOT, prompt=voice_prompt(text=None)))
    assert info.value.code == "prompt_text_required"


# -- threads, cancellation, faults -------------------------------------------------


async def test_a_cancelled_request_stops_the_model_and_frees_its_slot(tmp_path: Path) -> None:
    engine = await started(make_model_dir(tmp_path, 2), concurrency=1)
    model_module = __import__("cosyvoice.cli.model", fromlist=["x"])
    model_module.TOKEN_S = 0.01  # a segment now takes seconds to generate

    def llm_threads() -> int:  # upstream's per-call thread: Thread(target=self.llm_job)
        return sum("llm_job" in t.name for t in threading.enumerate())

    stream = engine.synthesize(
        request(TEXT * 3, Mode.ZERO_SHOT, prompt=voice_prompt(), max_chars=200)
    )
    first = await anext(stream)
    assert first.samples.size
    assert llm_threads() == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert await eventually(lambda: engine._streams.busy == 0)  # the slot is free
    assert await eventually(lambda: llm_threads() == 0)  # the LLM thread has stopped
    assert engine.stats.cancelled == 1
    make_fast()
    next_request = request("你好。", Mode.ZERO_SHOT, prompt=voice_prompt())
    chunks = await asyncio.wait_for(collect(engine, next_request), 10)
    assert chunks  # the single slot serves the next request
    await engine.close()


async def test_an_upstream_exception_is_an_engine_error(v2: CosyVoiceEngine) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
        yield  # a generator, like upstream's

    v2._model.inference_cross_lingual = broken
    with pytest.raises(EngineError, match="illegal memory access") as info:
        await collect(v2, request(TEXT, Mode.CROSS_LINGUAL, prompt=voice_prompt()))
    assert info.value.code == "engine_failed"
    assert v2.stats.failed == 1
    assert await eventually(lambda: v2._streams.busy == 0)


async def test_v1_sft_and_instruct_match_upstream(tmp_path: Path) -> None:
    path = make_model_dir(tmp_path, 1)
    path = path.rename(path.parent / "CosyVoice-300M-Instruct")
    engine = await started(path)
    speaker = engine.speakers()[1]
    got = join(
        await collect(
            engine, request(TEXT, Mode.INSTRUCT, speaker=speaker, instruct="A fiery rebel leader.")
        )
    )
    model = stand_in().AutoModel(model_dir=str(path))
    want = direct(
        model.inference_instruct(TEXT, speaker.id, "A fiery rebel leader.<|endofprompt|>")
    )
    assert np.array_equal(got, want)
    sft = join(await collect(engine, request(TEXT, Mode.SFT, speaker=speaker)))
    assert np.array_equal(sft, direct(model.inference_sft(TEXT, speaker.id)))
    await engine.close()


# -- text that is still arriving ------------------------------------------------------


async def test_text_streamed_in_is_spoken_before_it_is_complete(v2: CosyVoiceEngine) -> None:
    """CosyVoice 2/3 take a generator of text (an LLM's output): the first
    audio must leave before the last piece of text has arrived."""
    pieces = [
        "收到好友从远方寄来的生日礼物，",
        "那份意外的惊喜与深深的祝福",
        "让我心中充满了",
        "甜蜜的快乐",
    ]
    sent: list[float] = []

    async def llm() -> AsyncIterator[str]:
        for piece in pieces:
            sent.append(asyncio.get_running_loop().time())
            yield piece
            await asyncio.sleep(0.3)

    prompt = voice_prompt()
    req = replace(request("", Mode.ZERO_SHOT, prompt=prompt), segments=(), text_stream=llm())
    arrivals: list[float] = []
    audio = []
    async for chunk in v2.synthesize(req):
        arrivals.append(asyncio.get_running_loop().time())
        audio.append(chunk.samples)
    assert v2.capabilities.text_streaming
    assert arrivals[0] < sent[-1]  # spoke while the text was still coming
    model = stand_in().AutoModel(model_dir=v2._model.model_dir)
    wav = io.BytesIO(prompt.wav(16000))
    whole = direct(model.inference_zero_shot("".join(pieces), prompt.text, wav))
    assert np.array_equal(np.concatenate(audio), whole)  # every piece was spoken, in order


async def test_streamed_text_gets_the_v3_prefix_first(tmp_path: Path) -> None:
    engine = await started(make_model_dir(tmp_path, 3))

    async def llm() -> AsyncIterator[str]:
        for piece in ("Good ", "morning."):
            yield piece

    prompt = voice_prompt()
    req = replace(request("", Mode.CROSS_LINGUAL, prompt=prompt), segments=(), text_stream=llm())
    got = join(await collect(engine, req))
    model = stand_in().AutoModel(model_dir=engine._model.model_dir)
    wav = io.BytesIO(prompt.wav(16000))
    want = direct(model.inference_cross_lingual(V3_PREFIX + "Good morning.", wav))
    assert np.array_equal(got, want)
    await engine.close()


async def test_v1_and_vllm_cannot_take_streamed_text(tmp_path: Path) -> None:
    v1 = await started(make_model_dir(tmp_path / "a", 1))
    vllm = CosyVoiceEngine("cv", model_dir=str(make_model_dir(tmp_path / "b", 2)), load_vllm=True)
    assert not v1.capabilities.text_streaming
    assert not vllm.capabilities.text_streaming
    await v1.close()
