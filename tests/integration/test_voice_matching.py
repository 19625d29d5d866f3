"""The embedded engine imitating a voice prompt's pitch and pace (it cannot clone).

Prompts are espeak speech by other variants at extreme pitch settings and
speeds, sent through the same intake a registered voice goes through; the
engine's output is measured with the project's F0 tracker and, for one case,
with an independent autocorrelation written here, so the test does not only
check the tracker against itself.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from voxgate.audio.intake import intake
from voxgate.audio.pitch import median_f0
from voxgate.audio.prompt import PromptAudio
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.espeak.catalog import SPEAKERS_BY_ID
from voxgate.engines.espeak.engine import EspeakEngine
from voxgate.engines.espeak.matching import (
    CALIBRATION_TEXT,
    MALE_BELOW_HZ,
    choose_speaker,
    prompt_key,
)
from voxgate.text.markup import parse
from voxgate.text.split import split

PROMPT_TEXT = (
    "Good morning. This is a short recording of my voice, made for the voice library. "
    "I hope that it sounds natural enough."
)
TEXT = "Thank you for calling. Your order has shipped, and it should arrive on Tuesday afternoon."


def request(
    text: str, mode: Mode = Mode.ZERO_SHOT, speaker: str | None = None, **kw: object
) -> EngineRequest:
    return EngineRequest(
        "t",
        mode,
        tuple(split(parse(text))),
        SPEAKERS_BY_ID[speaker] if speaker else None,
        **kw,  # type: ignore[arg-type]
    )


async def collect(engine: EspeakEngine, req: EngineRequest) -> np.ndarray:
    return np.concatenate([c.samples async for c in engine.synthesize(req)])


def wav(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        ints = np.clip(samples * 32767, -32768, 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(ints, format="s16", layout="mono")
        frame.sample_rate = rate
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


async def recorded(
    engine: EspeakEngine, speaker: str, pitch: float = 0.0, speed: float = 1.0
) -> PromptAudio:
    """A 'recording' of a voice, taken in like an upload."""
    spoken = await collect(
        engine, request(PROMPT_TEXT, Mode.SFT, speaker, pitch=pitch, speed=speed)
    )
    return intake(wav(0.5 * spoken, engine.capabilities.sample_rate)).prompt


def autocorrelation_f0(samples: np.ndarray, rate: int) -> float:
    """Median F0 by plain normalized autocorrelation over 40 ms frames: voiced
    where the best lag for 70-400 Hz correlates above 0.6."""
    size, hop = int(0.04 * rate), int(0.01 * rate)
    lo, hi = int(rate / 400), int(rate / 70)
    x = samples.astype(np.float64)
    starts = range(0, len(x) - size - hi, hop)
    loudest = max(np.sqrt(np.mean(x[i : i + size] ** 2)) for i in starts)
    found = []
    for start in starts:
        head = x[start : start + size]
        if np.sqrt(np.mean(head**2)) < 0.05 * loudest:
            continue
        lagged = sliding_window_view(x[start + lo : start + hi + size], size)
        norms = np.sqrt(np.einsum("ij,ij->i", lagged, lagged) * np.dot(head, head))
        scores = (lagged @ head) / np.maximum(norms, 1e-12)
        best = int(np.argmax(scores))
        if scores[best] > 0.6:
            found.append(rate / (lo + best))
    return float(np.median(found))


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[EspeakEngine]:
    e = EspeakEngine(concurrency=4)
    await e.start()
    yield e
    await e.close()


@pytest.fixture(scope="module")
async def low(engine: EspeakEngine) -> PromptAudio:
    return await recorded(engine, "en-us-m4", pitch=0.6)  # about 100 Hz


@pytest.fixture(scope="module")
async def high(engine: EspeakEngine) -> PromptAudio:
    return await recorded(engine, "en-us-f1", pitch=6.0)  # about 230 Hz


def test_espeak_offers_the_cloning_modes(engine: EspeakEngine) -> None:
    caps = engine.capabilities
    assert {Mode.ZERO_SHOT, Mode.CROSS_LINGUAL} <= caps.modes
    assert caps.prompt_modes == {Mode.ZERO_SHOT, Mode.CROSS_LINGUAL}
    assert set(CALIBRATION_TEXT) == {s.language for s in SPEAKERS_BY_ID.values()}


@pytest.mark.parametrize(("which", "near"), [("low", 100.0), ("high", 230.0)])
async def test_output_pitch_lands_on_the_prompts(
    engine: EspeakEngine, low: PromptAudio, high: PromptAudio, which: str, near: float
) -> None:
    prompt = low if which == "low" else high
    wanted = median_f0(prompt.samples, prompt.sample_rate)
    assert wanted == pytest.approx(near, rel=0.12)
    rate = engine.capabilities.sample_rate
    plain = median_f0(await collect(engine, request(TEXT, Mode.SFT)), rate)
    out = await collect(engine, request(TEXT, prompt=prompt))
    got = median_f0(out, rate)
    assert got == pytest.approx(wanted, rel=0.15)
    assert plain is not None
    assert got is not None
    assert abs(got - wanted) < abs(plain - wanted), "closer than the default voice"


async def test_independent_measure_agrees(engine: EspeakEngine, low: PromptAudio) -> None:
    out = await collect(engine, request(TEXT, prompt=low))
    wanted = autocorrelation_f0(low.samples, low.sample_rate)
    got = autocorrelation_f0(out, engine.capabilities.sample_rate)
    assert wanted == pytest.approx(100.0, rel=0.15)
    assert got == pytest.approx(wanted, rel=0.15)


async def test_gender_follows_the_prompt(
    engine: EspeakEngine, low: PromptAudio, high: PromptAudio
) -> None:
    """Measured through the output: the chosen variant reaches the F0, and a named
    speaker is kept (and moved to the prompt's pitch as far as it goes)."""
    matcher = engine._matcher
    low_profile = await matcher.profile(low)
    high_profile = await matcher.profile(high)
    assert low_profile is not None
    assert high_profile is not None
    assert low_profile.median_f0 < MALE_BELOW_HZ < high_profile.median_f0
    assert choose_speaker(low_profile, "en-US").gender == "male"
    assert choose_speaker(high_profile, "en-US").gender == "female"
    assert choose_speaker(high_profile, "zh").id == "zh-f3"
    named = await collect(engine, request(TEXT, speaker="en-us-f3", prompt=low))
    default_f3 = median_f0(await collect(engine, request(TEXT, Mode.SFT, "en-us-f3")), 22050)
    got = median_f0(named, engine.capabilities.sample_rate)
    assert got is not None
    assert default_f3 is not None
    assert got < 0.85 * default_f3  # f3 pulled down towards 100 Hz


async def test_cross_lingual_speaks_the_texts_language(
    engine: EspeakEngine, high: PromptAudio
) -> None:
    out = await collect(
        engine, request("今天天气很好，我们去公园散步吧。", Mode.CROSS_LINGUAL, prompt=high)
    )
    wanted = median_f0(high.samples, high.sample_rate)
    got = median_f0(out, engine.capabilities.sample_rate)
    assert got == pytest.approx(wanted, rel=0.15)


def test_the_notice_says_what_it_is(engine: EspeakEngine, low: PromptAudio) -> None:
    notices = engine.check(request(TEXT, prompt=low))
    assert [n.code for n in notices] == ["voice_matched"]
    assert "CosyVoice" in notices[0].message
    assert notices[0].header().isascii()
    assert engine.check(request(TEXT, Mode.SFT)) == []


async def test_pace_follows_the_prompt(engine: EspeakEngine) -> None:
    slow = await recorded(engine, "en-us-m3", speed=0.7)
    fast = await recorded(engine, "en-us-m3", speed=1.5)
    rate = engine.capabilities.sample_rate
    plain = len(await collect(engine, request(TEXT, Mode.SFT))) / rate
    after_slow = len(await collect(engine, request(TEXT, prompt=slow))) / rate
    after_fast = len(await collect(engine, request(TEXT, prompt=fast))) / rate
    assert after_slow > 1.15 * plain
    assert after_fast < 0.85 * plain


async def test_profiles_are_cached_per_prompt(engine: EspeakEngine, low: PromptAudio) -> None:
    matcher = engine._matcher
    registered = PromptAudio(low.samples, low.sample_rate, voice_id="v-123")
    assert prompt_key(registered).startswith("voice:v-123")
    assert prompt_key(low).startswith("sha256:")
    first = await matcher.profile(registered)
    assert await matcher.profile(registered) is first
    assert await matcher.profile(PromptAudio(low.samples.copy(), low.sample_rate)) is not None


async def test_a_prompt_without_voice_falls_back_to_the_default(engine: EspeakEngine) -> None:
    hiss = (0.1 * np.random.default_rng(2).standard_normal(5 * 48000)).astype(np.float32)
    out = await collect(engine, request(TEXT, prompt=PromptAudio(hiss, 48000)))
    assert len(out) > 0
