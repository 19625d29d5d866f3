"""Speech recognition for voice prompts (voxgate.asr).

pocketsphinx is real: it transcribes speech made by voxgate's own espeak
engine, in its worker processes. SenseVoice and faster-whisper run against
stand-ins of their packages (tests/fakes/funasr, tests/fakes/faster_whisper)
that follow the upstream interfaces and "hear" only recordings a test taught
them, so what the adapters do around the models can be checked exactly.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import pytest

from tests.support.procs import FAKES
from voxgate.asr.audio import to_model_audio
from voxgate.asr.base import Transcript, TranscriptionUnavailable, build_transcriber, language_code
from voxgate.asr.pocketsphinx import PocketsphinxTranscriber
from voxgate.asr.sensevoice import SenseVoiceTranscriber, parse_output
from voxgate.asr.whisper import WhisperTranscriber
from voxgate.config import AsrConfig
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.espeak.catalog import SPEAKERS_BY_ID
from voxgate.engines.espeak.engine import EspeakEngine
from voxgate.errors import EngineUnavailable
from voxgate.text.markup import parse
from voxgate.text.split import split

NUMBERS = "One two three four five six seven eight nine ten."
NUMBER_WORDS = NUMBERS.lower().rstrip(".").split()
RATE = 16000
T = TypeVar("T")


def tone(seconds: float, freq: float = 220.0, rate: int = RATE) -> np.ndarray:
    """A recording the stand-ins can be taught (its fingerprint is what matters)."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


async def ticking_while(work: Awaitable[T]) -> tuple[T, float]:
    """``work``'s result, and the longest the event loop went without a tick."""
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        result = await work
    finally:
        ticker.cancel()
    return result, max(gaps, default=math.inf)


async def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Polls: the things waited for happen in other threads and processes."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


# -- choosing a transcriber ----------------------------------------------------------


def test_none_means_no_transcriber() -> None:
    assert build_transcriber(AsrConfig(kind="none")) is None


def test_the_default_is_pocketsphinx_and_typos_are_configuration_errors() -> None:
    assert isinstance(build_transcriber(AsrConfig()), PocketsphinxTranscriber)
    with pytest.raises(ValueError, match="unknown asr kind 'whisper'") as info:
        build_transcriber(AsrConfig(kind="whisper"))
    assert "faster-whisper, pocketsphinx, sensevoice, none" in str(info.value)
    with pytest.raises(ValueError, match=r"unknown options \['concurency'\]") as info:
        build_transcriber(AsrConfig(options={"concurency": 2}))
    assert "concurrency" in str(info.value)
    with pytest.raises(ValueError, match="'sensevoice' needs the option"):
        build_transcriber(AsrConfig(kind="sensevoice"))


def test_language_codes() -> None:
    assert language_code("en-US") == "en"
    assert language_code("zh_CN") == "zh"
    assert language_code("cmn") == "zh"
    assert language_code("zh-yue") == "yue"
    assert language_code("auto") is None
    assert language_code(None) is None


def test_audio_is_resampled_to_16k_and_silence_is_nothing_to_hear() -> None:
    audio = to_model_audio(tone(1.0, rate=48000), 48000)
    assert audio.dtype == np.float32
    assert len(audio) == RATE
    with pytest.raises(TranscriptionUnavailable, match="no words recognized: the audio is silent"):
        to_model_audio(np.zeros(RATE, np.float32), RATE)
    with pytest.raises(TranscriptionUnavailable, match="empty"):
        to_model_audio(np.zeros(0, np.float32), RATE)


# -- pocketsphinx (real) ---------------------------------------------------------------


@pytest.fixture(scope="module")
async def espeak() -> tuple[np.ndarray, int]:
    """The numbers one to ten, spoken by voxgate's espeak engine (22.05 kHz)."""
    engine = EspeakEngine(concurrency=1)
    await engine.start()
    try:
        request = EngineRequest(
            "asr", Mode.SFT, tuple(split(parse(NUMBERS))), SPEAKERS_BY_ID["en-us-f3"]
        )
        chunks = [c.samples async for c in engine.synthesize(request)]
        rate = engine.capabilities.sample_rate
    finally:
        await engine.close()
    return np.concatenate(chunks), rate


@pytest.fixture(scope="module")
async def sphinx() -> AsyncIterator[PocketsphinxTranscriber]:
    transcriber = PocketsphinxTranscriber()
    await transcriber.start()
    yield transcriber
    await transcriber.close()


async def test_pocketsphinx_recognizes_espeak_numbers_without_blocking_the_loop(
    sphinx: PocketsphinxTranscriber, espeak: tuple[np.ndarray, int]
) -> None:
    samples, rate = espeak
    transcript, longest_gap = await ticking_while(sphinx.transcribe(samples, rate, "en-US"))
    assert transcript.engine == "pocketsphinx"
    assert transcript.language == "en"
    heard = transcript.text.split()
    # Measured: "one two three four five six and the i can" (rough, as documented).
    recognized = [w for w in NUMBER_WORDS if w in heard]
    assert len(recognized) >= 4, transcript.text
    assert heard[:3] == ["one", "two", "three"], transcript.text
    # In a thread of this process the decoder would hold the GIL for over a second.
    assert longest_gap < 0.5


async def test_pocketsphinx_hears_no_words_in_silence_or_noise(
    sphinx: PocketsphinxTranscriber,
) -> None:
    with pytest.raises(TranscriptionUnavailable, match="silent"):
        await sphinx.transcribe(np.zeros(2 * RATE, np.float32), RATE)
    noise = (np.random.default_rng(7).standard_normal(RATE) * 0.1).astype(np.float32)
    with pytest.raises(TranscriptionUnavailable, match=r"^no words recognized$"):
        await sphinx.transcribe(noise, RATE)


async def test_pocketsphinx_refuses_chinese_and_names_the_recognizers_that_can(
    sphinx: PocketsphinxTranscriber, espeak: tuple[np.ndarray, int]
) -> None:
    assert sphinx.languages == frozenset({"en"})
    with pytest.raises(TranscriptionUnavailable, match="en only") as info:
        await sphinx.transcribe(espeak[0], espeak[1], "zh-CN")
    assert "sensevoice" in str(info.value)
    assert "faster-whisper" in str(info.value)


async def test_a_cancelled_or_crashed_worker_is_replaced(
    sphinx: PocketsphinxTranscriber, espeak: tuple[np.ndarray, int]
) -> None:
    samples, rate = espeak
    call = asyncio.create_task(sphinx.transcribe(samples, rate))
    await eventually(lambda: sphinx.busy == 1)
    (worker,) = sphinx._busy
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await asyncio.wait_for(worker.proc.wait(), 5) != 0  # killed, not left decoding
    assert sphinx.busy == 0

    # The next call starts a fresh worker; then one dies while idle.
    first = await sphinx.transcribe(samples[: rate * 2], rate)
    assert first.text
    (idle,) = sphinx._workers
    idle.kill()
    await idle.proc.wait()
    with pytest.raises(TranscriptionUnavailable, match="worker process ended"):
        await sphinx.transcribe(samples[: rate * 2], rate)
    assert (await sphinx.transcribe(samples[: rate * 2], rate)).text == first.text


async def test_pocketsphinx_diagnosis_and_a_broken_model_dir(tmp_path: Path) -> None:
    checks = {c.subject: c for c in await PocketsphinxTranscriber().diagnose()}
    assert [c.status for c in checks.values()] == ["ok", "ok", "ok"]
    assert "en-us.lm.bin" in checks["model files"].detail

    (tmp_path / "en-us").mkdir()
    broken = PocketsphinxTranscriber(model_dir=str(tmp_path))
    model = {c.subject: c for c in await broken.diagnose()}["model files"]
    assert model.status == "fail"
    assert "acoustic model" in model.detail
    assert model.fix
    with pytest.raises(EngineUnavailable, match="lacks an acoustic model"):
        await broken.start()
    with pytest.raises(TranscriptionUnavailable, match="loading it failed"):
        await broken.transcribe(tone(1.0), RATE)


# -- stand-ins ---------------------------------------------------------------------------


@pytest.fixture
def funasr(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The stand-in funasr package, its counters reset."""
    monkeypatch.syspath_prepend(str(FAKES))
    package = importlib.import_module("funasr")
    assert str(FAKES) in str(package.__file__), "a real funasr shadows the stand-in"
    standin = importlib.import_module("funasr.standin")
    standin.reset()
    return standin


@pytest.fixture
def whisper(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The stand-in faster_whisper package, its counters reset."""
    monkeypatch.syspath_prepend(str(FAKES))
    package = importlib.import_module("faster_whisper")
    assert str(FAKES) in str(package.__file__), "a real faster_whisper shadows the stand-in"
    standin = importlib.import_module("faster_whisper.standin")
    standin.reset()
    return standin


def sensevoice_dir(root: Path) -> Path:
    """Laid out as ModelScope's iic/SenseVoiceSmall (files empty but for the config)."""
    path = root / "SenseVoiceSmall"
    path.mkdir()
    (path / "config.yaml").write_text("model: SenseVoiceSmall\nencoder: SenseVoiceEncoderSmall\n")
    (path / "configuration.json").write_text(json.dumps({"framework": "pytorch"}))
    for name in ("model.pt", "am.mvn", "chn_jpn_yue_eng_ko_spectok.bpe.model"):
        (path / name).write_bytes(b"")
    return path


def whisper_dir(root: Path, *, multilingual: bool = True) -> Path:
    """Laid out as a CTranslate2 conversion (Systran/faster-whisper-*)."""
    path = root / ("faster-whisper-small" if multilingual else "faster-whisper-small.en")
    path.mkdir()
    lang_ids = [50259, 50260] if multilingual else []
    (path / "config.json").write_text(json.dumps({"lang_ids": lang_ids}))
    for name in ("model.bin", "tokenizer.json", "vocabulary.txt"):
        (path / name).write_text("{}")
    return path


async def started(transcriber: T) -> T:
    await transcriber.start()  # type: ignore[attr-defined]
    return transcriber


def pool_threads(calls: list[dict[str, Any]]) -> set[str]:
    return {c["thread"].rsplit("_", 1)[0] for c in calls}


# -- sensevoice ------------------------------------------------------------------------


def test_sensevoice_refuses_a_hub_id_with_the_download_command() -> None:
    with pytest.raises(ValueError, match="never downloads") as info:
        SenseVoiceTranscriber(model_dir="iic/SenseVoiceSmall")
    assert "modelscope download --model iic/SenseVoiceSmall" in str(info.value)
    with pytest.raises(ValueError, match="is not a directory"):
        SenseVoiceTranscriber(model_dir="/nonexistent/SenseVoiceSmall")


def test_sensevoice_output_tags_give_the_language_and_are_stripped() -> None:
    assert parse_output("<|en|><|NEUTRAL|><|Speech|><|withitn|>Hello there.") == (
        "Hello there.",
        "en",
    )
    merged = (
        "<|zh|><|HAPPY|><|Speech|><|withitn|>你好，<|zh|><|NEUTRAL|><|Speech|><|withitn|>世界。"
    )
    assert parse_output(merged) == ("你好，世界。", "zh")
    two = "<|en|><|NEUTRAL|><|Speech|><|withitn|>Hello.<|en|><|SAD|><|BGM|><|withitn|>Goodbye."
    assert parse_output(two) == ("Hello. Goodbye.", "en")
    assert parse_output("<|nospeech|><|EMO_UNKNOWN|><|Event_UNK|><|woitn|>") == ("", None)


async def test_sensevoice_transcribes_with_language_and_itn(
    funasr: ModuleType, tmp_path: Path
) -> None:
    model_dir = sensevoice_dir(tmp_path)
    speech = tone(2.0, rate=48000)  # resampled by the adapter before the model sees it
    funasr.teach(
        model_dir, to_model_audio(speech, 48000), "你好，世界。", language="zh", emotion="HAPPY"
    )
    hello = tone(1.0, 330.0)
    funasr.teach(model_dir, hello, "Hello, world.", language="en")
    sv = await started(SenseVoiceTranscriber(model_dir=str(model_dir)))
    try:
        assert await sv.transcribe(speech, 48000) == Transcript("你好，世界。", "zh", "sensevoice")
        # Upstream's own post-processing would append the emotion as an emoji.
        upstream = importlib.import_module("funasr.utils.postprocess_utils")
        raw = "<|zh|><|HAPPY|><|Speech|><|withitn|>你好，世界。"
        assert upstream.rich_transcription_postprocess(raw) == "你好，世界。😊"

        got = await sv.transcribe(hello, RATE, "yue")  # the language asked is passed on
        assert got == Transcript("Hello, world.", "yue", "sensevoice")  # with ITN: punctuation
        assert funasr.calls[-1]["language"] == "yue"
        assert funasr.calls[-1]["use_itn"] is True
        await sv.transcribe(hello, RATE, "en-GB")
        assert funasr.calls[-1]["language"] == "en"
        await sv.transcribe(hello, RATE)
        assert funasr.calls[-1]["language"] == "auto"
    finally:
        await sv.close()


async def test_sensevoice_says_why_when_it_has_no_words(funasr: ModuleType, tmp_path: Path) -> None:
    model_dir = sensevoice_dir(tmp_path)
    broken = tone(1.0, 440.0)
    funasr.teach(model_dir, broken, "", error="CUDA out of memory")
    sv = await started(SenseVoiceTranscriber(model_dir=str(model_dir)))
    try:
        with pytest.raises(TranscriptionUnavailable, match="transcribes en, ja, ko, yue, zh"):
            await sv.transcribe(broken, RATE, "fr")
        assert not funasr.calls  # refused before any model call
        with pytest.raises(TranscriptionUnavailable, match=r"^no words recognized$"):
            await sv.transcribe(tone(1.0, 550.0), RATE)  # untaught: SenseVoice's no-speech
        with pytest.raises(TranscriptionUnavailable, match="sensevoice failed: CUDA out of memory"):
            await sv.transcribe(broken, RATE)
    finally:
        await sv.close()


async def test_sensevoice_without_funasr_says_how_to_install_it(
    funasr: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sv = SenseVoiceTranscriber(model_dir=str(sensevoice_dir(tmp_path)))
    monkeypatch.setitem(sys.modules, "funasr", None)  # import funasr -> ImportError
    checks = {c.subject: c for c in await sv.diagnose()}
    assert checks["model files"].status == "ok"
    assert checks["package funasr"].status == "fail"
    assert "pip install 'voxgate[sensevoice]'" in str(checks["package funasr"].fix)
    with pytest.raises(EngineUnavailable, match="cannot import funasr") as info:
        await sv.start()
    assert "voxgate[sensevoice]" in str(info.value.hint)
    with pytest.raises(TranscriptionUnavailable, match="cannot import funasr"):
        await sv.transcribe(tone(1.0), RATE)


async def test_sensevoice_missing_model_files_fail_diagnosis_with_the_fix(
    funasr: ModuleType, tmp_path: Path
) -> None:
    model_dir = sensevoice_dir(tmp_path)
    (model_dir / "model.pt").unlink()
    sv = SenseVoiceTranscriber(model_dir=str(model_dir))
    checks = {c.subject: c for c in await sv.diagnose()}
    assert checks["package funasr"].status == "ok"
    files = checks["model files"]
    assert files.status == "fail"
    assert "model.pt" in files.detail
    assert "modelscope download --model iic/SenseVoiceSmall" in str(files.fix)
    with pytest.raises(EngineUnavailable, match=r"lacks model\.pt"):  # no random weights
        await sv.start()


async def test_sensevoice_runs_in_its_own_threads_within_its_concurrency(
    funasr: ModuleType, tmp_path: Path
) -> None:
    model_dir = sensevoice_dir(tmp_path)
    slow = tone(1.0, 300.0)
    funasr.teach(model_dir, slow, "Slow.", delay_s=0.3)
    sv = await started(SenseVoiceTranscriber(model_dir=str(model_dir), concurrency=2))
    try:
        results, longest_gap = await ticking_while(
            asyncio.gather(*(sv.transcribe(slow, RATE) for _ in range(5)))
        )
        assert [r.text for r in results] == ["Slow."] * 5
        assert funasr.peak == 2  # bounded, and used
        assert pool_threads(funasr.calls) == {"voxgate-asr-sensevoice"}
        assert longest_gap < 0.1  # the 0.3 s model calls never held the loop

        # A caller that gives up does not free the slot before the model does.
        call = asyncio.create_task(sv.transcribe(slow, RATE))
        await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert sv.busy == 1
        await eventually(lambda: sv.busy == 0)
    finally:
        await sv.close()


# -- faster-whisper -------------------------------------------------------------------------


def test_whisper_refuses_model_names_with_the_download_command() -> None:
    with pytest.raises(ValueError, match="never downloads") as info:
        WhisperTranscriber(model_dir="large-v3")
    assert "hf download Systran/faster-whisper-large-v3 --local-dir" in str(info.value)
    with pytest.raises(ValueError, match="never downloads") as info:
        WhisperTranscriber(model_dir="Systran/faster-whisper-small")
    assert "hf download Systran/faster-whisper-small" in str(info.value)


def test_whisper_compute_type_defaults(tmp_path: Path) -> None:
    model_dir = str(whisper_dir(tmp_path))
    assert WhisperTranscriber(model_dir=model_dir).compute_type == "int8"
    assert WhisperTranscriber(model_dir=model_dir, device="cuda").compute_type == "float16"
    custom = WhisperTranscriber(model_dir=model_dir, compute_type="float32")
    assert custom.compute_type == "float32"


async def test_whisper_joins_lazy_segments_in_its_own_thread(
    whisper: ModuleType, tmp_path: Path
) -> None:
    model_dir = whisper_dir(tmp_path)
    english, chinese = tone(1.5, 250.0), tone(1.5, 350.0)
    whisper.teach(model_dir, english, [" Hello there,", " general Kenobi."], avg_logprob=-0.2)
    whisper.teach(model_dir, chinese, ["你好，", "世界。"], language="zh")
    fw = await started(WhisperTranscriber(model_dir=str(model_dir), beam_size=3))
    try:
        assert fw.languages is not None
        assert {"zh", "yue", "en", "ja"} <= fw.languages
        got = await fw.transcribe(english, RATE)
        assert got.text == "Hello there, general Kenobi."
        assert got.language == "en"
        assert got.engine == "faster-whisper"
        assert got.confidence == pytest.approx(math.exp(-0.2))
        assert whisper.calls[-1]["beam_size"] == 3
        assert whisper.calls[-1]["language"] == "en"
        # The segments were decoded (read) in the transcriber's thread, not on the loop.
        assert {t.rsplit("_", 1)[0] for t in whisper.consumed_in} == {"voxgate-asr-faster-whisper"}

        zh = await fw.transcribe(chinese, RATE)
        assert (zh.text, zh.language) == ("你好，世界。", "zh")
        forced = await fw.transcribe(chinese, RATE, "ja")
        assert forced.language == "ja"
        assert whisper.calls[-1]["language"] == "ja"
        with pytest.raises(TranscriptionUnavailable, match=r"^no words recognized$"):
            await fw.transcribe(tone(1.0, 700.0), RATE)
    finally:
        await fw.close()


async def test_an_english_only_whisper_refuses_other_languages(
    whisper: ModuleType, tmp_path: Path
) -> None:
    model_dir = whisper_dir(tmp_path, multilingual=False)
    speech = tone(1.0)
    whisper.teach(model_dir, speech, [" Hello."])
    fw = WhisperTranscriber(model_dir=str(model_dir))
    assert fw.languages is None  # unknown until loaded
    await fw.start()
    try:
        assert fw.languages == frozenset({"en"})
        with pytest.raises(TranscriptionUnavailable, match="English-only"):
            await fw.transcribe(speech, RATE, "zh")  # upstream would transcribe it as English
        assert not whisper.calls
        assert (await fw.transcribe(speech, RATE, "en")).text == "Hello."
    finally:
        await fw.close()


async def test_whisper_shares_one_model_across_its_threads(
    whisper: ModuleType, tmp_path: Path
) -> None:
    model_dir = whisper_dir(tmp_path)
    slow = tone(1.0, 260.0)
    whisper.teach(model_dir, slow, [" One,", " two."], delay_s=0.2)
    fw = await started(WhisperTranscriber(model_dir=str(model_dir), concurrency=2))
    try:
        models = {id(m) for m in list(fw._models.queue)}
        assert len(models) == 1
        results, longest_gap = await ticking_while(
            asyncio.gather(*(fw.transcribe(slow, RATE) for _ in range(4)))
        )
        assert {r.text for r in results} == {"One, two."}
        assert whisper.peak == 2
        assert longest_gap < 0.1
    finally:
        await fw.close()


async def test_whisper_failures_are_reasons(whisper: ModuleType, tmp_path: Path) -> None:
    model_dir = whisper_dir(tmp_path)
    broken = tone(1.0, 800.0)
    whisper.teach(model_dir, broken, [" x"], error="CUBLAS_STATUS_ALLOC_FAILED")
    fw = await started(WhisperTranscriber(model_dir=str(model_dir)))
    try:
        with pytest.raises(TranscriptionUnavailable, match="faster-whisper failed: CUBLAS"):
            await fw.transcribe(broken, RATE)
    finally:
        await fw.close()
    # float16 on a CPU: CTranslate2 refuses it, which is why int8 is the CPU default.
    half = WhisperTranscriber(model_dir=str(model_dir), compute_type="float16")
    with pytest.raises(EngineUnavailable, match="float16"):
        await half.start()


async def test_whisper_diagnosis(
    whisper: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = whisper_dir(tmp_path)
    fw = WhisperTranscriber(model_dir=str(model_dir))
    checks = {c.subject: c for c in await fw.diagnose()}
    assert checks["model files"].status == "ok"
    assert checks["package faster-whisper"].status == "ok"
    assert checks["device"].status == "warn"  # the stand-in comes without ctranslate2

    (model_dir / "tokenizer.json").unlink()  # faster-whisper would fetch one from the Hub
    files = {c.subject: c for c in await fw.diagnose()}["model files"]
    assert files.status == "fail"
    assert "tokenizer.json" in files.detail
    assert "hf download" in str(files.fix)
    with pytest.raises(EngineUnavailable, match=r"lacks tokenizer\.json"):
        await fw.start()

    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    package = {c.subject: c for c in await fw.diagnose()}["package faster-whisper"]
    assert package.status == "fail"
    assert "voxgate[whisper]" in str(package.fix)
