from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import numpy as np
import pytest

from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.espeak.catalog import LANGUAGES, SPEAKERS, SPEAKERS_BY_ID
from voxgate.engines.espeak.engine import EspeakEngine
from voxgate.engines.espeak.render import arpabet_to_espeak, render_segment, segment_language
from voxgate.errors import EngineError, RequestError
from voxgate.text.markup import parse
from voxgate.text.split import split

OPENAI_VOICES = "alloy ash ballad coral echo fable onyx nova sage shimmer verse marin cedar".split()
COSYVOICE_SPEAKERS = ["中文女", "中文男", "英文女", "英文男", "日语男", "粤语女", "韩语女"]


def request(text: str, speaker: str = "en-us-f3", **kw: object) -> EngineRequest:
    return EngineRequest(
        "t",
        kw.pop("mode", Mode.SFT),
        tuple(split(parse(text))),  # type: ignore[arg-type]
        SPEAKERS_BY_ID[speaker],
        **kw,
    )  # type: ignore[arg-type]


async def collect(engine: EspeakEngine, req: EngineRequest) -> np.ndarray:
    chunks = [c.samples async for c in engine.synthesize(req)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


@pytest.fixture(scope="module")
async def engine():
    e = EspeakEngine(concurrency=4)
    await e.start()
    yield e
    await e.close()


def test_catalog() -> None:
    ids = [s.id for s in SPEAKERS]
    assert len(ids) == len(set(ids))
    aliases = [a for s in SPEAKERS for a in s.aliases]
    assert len(aliases) == len(set(aliases))
    assert set(OPENAI_VOICES) <= set(aliases)
    assert set(COSYVOICE_SPEAKERS) <= set(aliases)
    assert {s.language for s in SPEAKERS} >= {"zh", "yue", "en-US", "en-GB", "ja", "ko"}


def test_language_routing() -> None:
    en, zh, ja = LANGUAGES["en-US"], LANGUAGES["zh"], LANGUAGES["ja"]
    seg = lambda t: split(parse(t))[0]  # noqa: E731
    assert segment_language(seg("你好"), en, None).code == "zh"
    assert segment_language(seg("Hello"), zh, None).code == "en-US"
    assert segment_language(seg("東京"), ja, None).code == "ja"  # kanji with a Japanese voice
    assert segment_language(seg("东京"), en, None).code == "zh"
    assert segment_language(seg("こんにちは"), zh, None).code == "ja"
    assert segment_language(seg("你好"), zh, "yue").code == "yue"
    assert segment_language(seg("Hello"), en, "yue").code == "en-US"  # script wins
    assert segment_language(seg("Hello"), en, "en-GB").code == "en-GB"


def test_rendering() -> None:
    seg = split(parse("I <strong>read</strong> [M][AY0][N][UW1][T] & [breath] more <text>"))[0]
    r = render_segment(seg, LANGUAGES["en-US"], "f3", None)
    assert r.voice == "en-us+f3"
    assert "<emphasis>read</emphasis>" in r.ssml
    assert "[[maInu:t]]" not in r.ssml
    assert "[[m" in r.ssml
    assert "&amp;" in r.ssml
    assert "&lt;text&gt;" in r.ssml
    assert '<break time="250ms"/>' in r.ssml
    assert arpabet_to_espeak(("M", "AY0", "N", "UW1", "T")) == "maIn'u:t"
    kana = render_segment(split(parse("今日は良い天気です。"))[0], LANGUAGES["ja"], "m3", None)
    assert kana.voice == "ja+m3"
    assert not any(0x4E00 <= ord(c) <= 0x9FFF for c in kana.ssml), "kanji become kana"


async def test_deterministic_and_isolated(engine: EspeakEngine) -> None:
    texts = [f"Sentence {i} is unique to request {i}." for i in range(12)]
    alone = [await collect(engine, request(t)) for t in texts]
    together = await asyncio.gather(*(collect(engine, request(t)) for t in texts))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
    assert len({a.tobytes() for a in alone}) == len(texts)


async def test_languages_produce_speech(engine: EspeakEngine) -> None:
    for text, speaker in [
        ("你好，世界。", "zh-f3"),
        ("你好", "yue-f3"),
        ("Hello", "en-gb-m2"),
        ("今日は良い天気です。", "ja-m3"),
        ("안녕하세요", "ko-f3"),
    ]:
        audio = await collect(engine, request(text, speaker))
        assert len(audio) / 22050 > 0.4, (text, speaker)
        assert np.abs(audio).max() > 0.1, (text, speaker)


async def test_prosody_controls(engine: EspeakEngine) -> None:
    base = await collect(engine, request("The same sentence, said twice."))
    slow = await collect(engine, request("The same sentence, said twice.", speed=0.6))
    loud = await collect(engine, request("The same sentence, said twice.", volume=1.8))
    high = await collect(engine, request("The same sentence, said twice.", pitch=7.0))
    assert len(slow) > 1.3 * len(base)
    assert np.abs(loud).mean() > 1.3 * np.abs(base).mean()
    assert not np.array_equal(high, base)


def test_check_reports_instructions(engine: EspeakEngine) -> None:
    notices = engine.check(request("hi", instruct="please speak slowly"))
    assert [n.code for n in notices] == ["instructions_applied"]
    notices = engine.check(request("hi", instruct="用四川话说"))
    assert {n.code for n in notices} == {"instructions_ignored", "dialect_unavailable"}
    with pytest.raises(RequestError) as exc:
        engine.check(request("hi", mode=Mode.INSTRUCT, instruct="like a pirate"))
    assert exc.value.code == "instruct_unsupported"


async def test_closing_the_stream_stops_the_child(engine: EspeakEngine) -> None:
    text = " ".join(f"Sentence number {i} of many." for i in range(200))
    gen = engine.synthesize(request(text))
    await anext(gen)
    assert engine.stats.active == 1
    await gen.aclose()
    assert engine.stats.active == 0
    assert engine.stats.cancelled >= 1


async def test_recovers_when_the_zygote_dies(engine: EspeakEngine) -> None:
    pid = engine.host_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    first = None
    with contextlib.suppress(EngineError):
        first = await collect(engine, request("After the crash."))
    audio = first if first is not None else await collect(engine, request("After the crash."))
    assert len(audio) > 0
    assert engine.host_pid != pid
