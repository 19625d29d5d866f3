"""Prompt intake on real files: espeak speech, encoded by PyAV in every container
a browser, a phone or an editor produces, then damaged in the ways uploads are."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import av
import numpy as np
import pytest

from voxgate.audio.intake import TARGET_PEAK_DBFS, Intake, intake
from voxgate.audio.resample import resample
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.espeak.catalog import SPEAKERS_BY_ID
from voxgate.engines.espeak.engine import EspeakEngine
from voxgate.errors import RequestError
from voxgate.text.markup import parse
from voxgate.text.split import split

RATE = 48000
SENTENCES = (
    "Good morning. This is a short recording of my voice, made for the voice library. "
    "I hope that it sounds natural enough."
)
OTHER = "When sunlight strikes raindrops in the air, they act as a prism and form a rainbow."


@dataclass(frozen=True)
class Speech:
    long: np.ndarray  # about 6.5 s, 48 kHz, float32, starting and ending on sound
    other: np.ndarray  # another speaker and sentence, about 5 s
    short: np.ndarray  # about 1 s


async def say(engine: EspeakEngine, text: str, speaker: str) -> np.ndarray:
    request = EngineRequest("t", Mode.SFT, tuple(split(parse(text))), SPEAKERS_BY_ID[speaker])
    chunks = [c.samples async for c in engine.synthesize(request)]
    audio = resample(np.concatenate(chunks), engine.capabilities.sample_rate, RATE)
    sound = np.flatnonzero(np.abs(audio) > 1e-3)
    return (0.5 * audio[sound[0] : sound[-1] + 1]).astype(np.float32)


@pytest.fixture(scope="module")
async def speech() -> AsyncIterator[Speech]:
    engine = EspeakEngine(concurrency=2)
    await engine.start()
    try:
        yield Speech(
            long=await say(engine, SENTENCES, "en-us-m3"),
            other=await say(engine, OTHER, "en-us-f3"),
            short=await say(engine, "Hello there.", "en-us-m3"),
        )
    finally:
        await engine.close()


def encode(
    samples: np.ndarray, rate: int = RATE, container: str = "wav", codec: str = "pcm_s16le"
) -> bytes:
    """A file as an ordinary tool writes it; 2-D samples are (channels, n)."""
    planar = np.atleast_2d(np.clip(samples, -1.0, 1.0)).astype(np.float32)
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        ctx = stream.codec_context
        resampler = av.AudioResampler(format=ctx.format.name, layout=layout, rate=rate)
        step = 4096
        for start in range(0, planar.shape[1] + step, step):
            piece = planar[:, start : start + step]
            frame = None
            if piece.shape[1]:
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(piece), format="fltp", layout=layout
                )
                frame.sample_rate = rate
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
            if frame is None:
                break
        out.mux(stream.encode(None))
    return buf.getvalue()


def padded(samples: np.ndarray, before: float, after: float, noise_db: float = -70.0) -> np.ndarray:
    """Speech with room tone before and after, as a person records it."""
    rng = np.random.default_rng(11)
    x = np.concatenate([np.zeros(int(before * RATE)), samples, np.zeros(int(after * RATE))])
    return (x + 10 ** (noise_db / 20) * rng.standard_normal(len(x))).astype(np.float32)


def refused(data: bytes, **kw: float) -> RequestError:
    with pytest.raises(RequestError) as caught:
        intake(data, **kw)  # type: ignore[arg-type]
    error = caught.value
    assert error.hint, "every rejection says what to do"
    assert error.param == "audio_sample"
    assert error.status == 400
    return error


# -- accepted ----------------------------------------------------------------------------


CONTAINERS = [
    ("wav", "wav", "pcm_s16le", "wav"),
    ("mp3", "mp3", "libmp3lame", "mp3"),
    ("ogg-opus", "ogg", "libopus", "ogg"),
    ("flac", "flac", "flac", "flac"),
    ("m4a-aac", "ipod", "aac", "mp4"),
    ("webm-opus", "webm", "libopus", "webm"),
]


@pytest.mark.parametrize(
    ("container", "codec", "reported"),
    [pytest.param(c, k, r, id=name) for name, c, k, r in CONTAINERS],
)
def test_every_container_is_accepted(
    speech: Speech, container: str, codec: str, reported: str
) -> None:
    source = padded(speech.long, 0.5, 0.5)
    result = intake(encode(source, container=container, codec=codec))
    report = result.report
    assert report.container == reported
    assert report.codec in {codec, "mp3float", "opus"}
    assert report.original_sample_rate == RATE
    assert report.channels == 1
    assert report.original_seconds == pytest.approx(len(source) / RATE, abs=0.1)
    # what is kept: the speech and a margin on each side, not the half seconds of room tone
    assert report.seconds == pytest.approx(len(speech.long) / RATE + 0.3, abs=0.12)
    assert report.trimmed_start_s == pytest.approx(0.35, abs=0.08)
    source_peak = 20 * np.log10(np.abs(speech.long).max())
    assert report.peak_dbfs == pytest.approx(source_peak, abs=1.0)  # lossy codecs move peaks
    assert report.gain_db == pytest.approx(TARGET_PEAK_DBFS - report.peak_dbfs)
    assert report.clipped_fraction < 1e-4
    assert report.snr_db is not None
    assert report.snr_db > 40
    assert report.warnings == ()
    prompt = result.prompt
    assert prompt.sample_rate == RATE
    assert prompt.samples.dtype == np.float32
    assert prompt.samples.ndim == 1
    assert prompt.text is None
    assert prompt.duration == pytest.approx(report.seconds, abs=1e-3)
    assert len(result.digest) == 64
    json.dumps(report.to_dict())  # JSON-able as it is


def test_stereo_is_mixed_and_high_rates_are_capped(speech: Speech) -> None:
    stereo = np.stack([speech.long, 0.5 * speech.long])
    result = intake(encode(stereo, container="flac", codec="flac"))
    assert result.report.channels == 2
    assert result.prompt.samples.ndim == 1
    hi = resample(speech.long, RATE, 96000)
    result = intake(encode(hi, rate=96000))
    assert result.report.original_sample_rate == 96000
    assert result.prompt.sample_rate == 48000


def test_trimming_removes_added_silence(speech: Speech) -> None:
    speech_s = len(speech.long) / RATE
    report = intake(encode(padded(speech.long, 2.0, 3.0))).report
    assert report.original_seconds == pytest.approx(speech_s + 5.0, abs=0.01)
    assert report.trimmed_start_s == pytest.approx(2.0 - 0.15, abs=0.06)
    assert report.trimmed_end_s == pytest.approx(3.0 - 0.15, abs=0.06)
    assert report.seconds == pytest.approx(speech_s + 0.3, abs=0.1)
    # what makes a prompt too short is its speech, not the file's length
    short = refused(encode(padded(speech.short, 3.0, 3.0)))
    assert short.code == "prompt_too_short"


def test_peak_normalization(speech: Speech) -> None:
    loud = intake(encode(speech.long / np.abs(speech.long).max() * 0.95))
    quiet = intake(encode(speech.long * 0.02))  # peaks near -40 dBFS
    target = 10 ** (TARGET_PEAK_DBFS / 20)
    for result in (loud, quiet):
        assert np.abs(result.prompt.samples).max() == pytest.approx(target, rel=1e-3)
    assert loud.report.gain_db == pytest.approx(-0.55, abs=0.05)
    assert quiet.report.gain_db == pytest.approx(TARGET_PEAK_DBFS - quiet.report.peak_dbfs)
    assert quiet.report.gain_db > 30
    assert quiet.report.warnings == ("prompt_quiet",)


def test_digest_is_of_the_audio_not_the_file(speech: Speech) -> None:
    wav = intake(encode(speech.long))
    flac = intake(encode(speech.long, container="flac", codec="flac"))
    assert wav.digest == flac.digest  # lossless: the same samples
    assert np.array_equal(wav.prompt.samples, flac.prompt.samples)
    other = intake(encode(speech.other))
    assert other.digest != wav.digest
    louder = intake(encode(speech.long * 1.5))  # normalization: nearly the same audio
    assert louder.digest != wav.digest  # still not bit-identical after rounding


def test_duration_limits_are_the_callers(speech: Speech) -> None:
    data = encode(speech.long)
    assert intake(data, min_seconds=6.0).report.seconds > 6.0
    error = refused(data, max_seconds=5.0)
    assert error.code == "prompt_too_long"
    assert "of speech; at most 5 s" in error.message


# -- warnings -----------------------------------------------------------------------------


def with_noise(samples: np.ndarray, snr_db: float, seed: int = 5) -> np.ndarray:
    """White noise at ``snr_db`` below the speech's power (where it speaks)."""
    frames = samples[: len(samples) // 480 * 480].reshape(-1, 480)
    power = (frames.astype(np.float64) ** 2).mean(axis=1)
    speaking = power[power > power.max() * 10 ** (-35 / 10)].mean()
    noise = np.random.default_rng(seed).standard_normal(len(samples))
    return (samples + noise * np.sqrt(speaking / 10 ** (snr_db / 10))).astype(np.float32)


def overdriven(samples: np.ndarray, db: float) -> np.ndarray:
    return np.clip(samples / np.abs(samples).max() * 10 ** (db / 20), -1.0, 1.0)


def test_warnings(speech: Speech) -> None:
    assert intake(encode(with_noise(speech.long, 15))).report.warnings == ("prompt_low_snr",)
    mild = intake(encode(overdriven(speech.long, 6))).report
    assert mild.warnings == ("prompt_clipping",)
    assert 0.001 < mild.clipped_fraction < 0.02
    gap = np.zeros(int(2.5 * RATE), np.float32)
    paused = intake(encode(np.concatenate([speech.long, gap, speech.other]))).report
    assert paused.warnings == ("prompt_long_pause",)


# -- refused ------------------------------------------------------------------------------


def test_too_short_and_too_long(speech: Speech) -> None:
    short = refused(encode(speech.short))
    assert short.code == "prompt_too_short"
    assert "s of speech; at least 3 s is needed" in short.message
    three = np.concatenate([speech.long, speech.other, speech.long])  # about 18 s of speech
    long = refused(encode(three))
    assert long.code == "prompt_too_long"
    assert "of speech; at most 15 s" in long.message
    # over the hard ceiling: refused before any analysis, whatever the speech in it
    ceiling = refused(encode(padded(speech.short, 15.0, 16.0)))
    assert ceiling.code == "prompt_too_long"
    assert "at most 30 s" in ceiling.message


def test_narrowband_recordings(speech: Speech) -> None:
    phone = resample(speech.long, RATE, 8000)
    assert refused(encode(phone, rate=8000)).code == "prompt_sample_rate"
    # Opus decodes at 48 kHz whatever it was fed; its header remembers the original
    error = refused(encode(phone, rate=8000, container="ogg", codec="libopus"))
    assert error.code == "prompt_sample_rate"
    assert "8000 Hz" in error.message


def test_silence(speech: Speech) -> None:
    assert refused(encode(np.zeros(5 * RATE, np.float32))).code == "prompt_silent"
    whisper = speech.long / np.abs(speech.long).max() * 10 ** (-60 / 20)  # peaks at -60 dBFS
    assert refused(encode(whisper)).code == "prompt_silent"
    hiss = 0.05 * np.random.default_rng(1).standard_normal(5 * RATE)  # a live, empty mic
    assert refused(encode(hiss)).code == "prompt_silent"


def test_clipped(speech: Speech) -> None:
    error = refused(encode(overdriven(speech.long, 20)))
    assert error.code == "prompt_clipped"
    # turned down after the damage: still clipped
    assert refused(encode(0.5 * overdriven(speech.long, 20))).code == "prompt_clipped"


def test_noisy(speech: Speech) -> None:
    error = refused(encode(with_noise(speech.long, 0)))
    assert error.code == "prompt_noisy"
    assert "dB above the background" in error.message


def test_not_audio() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    for data in (b"", b"definitely not audio", b'{"voice": "x"}', png, bytes(4096)):
        assert refused(data).code == "prompt_invalid", data[:20]


def test_cut_in_the_header(speech: Speech) -> None:
    for container, codec in (
        ("wav", "pcm_s16le"),
        ("flac", "flac"),
        ("ogg", "libopus"),
        ("ipod", "aac"),
        ("webm", "libopus"),
        ("mp3", "libmp3lame"),
    ):
        data = encode(speech.long, container=container, codec=codec)
        for cut in (8, 40):
            assert refused(data[:cut]).code == "prompt_corrupt", (container, cut)


def test_cut_in_the_middle(speech: Speech) -> None:
    for container, codec in (
        ("wav", "pcm_s16le"),
        ("flac", "flac"),
        ("ipod", "aac"),
        ("webm", "libopus"),
    ):
        data = encode(speech.long, container=container, codec=codec)
        error = refused(data[: len(data) * 2 // 3])
        assert error.code == "prompt_corrupt", container


def test_wav_header_that_lies(speech: Speech) -> None:
    data = bytearray(encode(speech.long))
    offset = data.index(b"data")
    (size,) = struct.unpack_from("<I", data, offset + 4)
    struct.pack_into("<I", data, offset + 4, size * 2)  # claims twice the audio it has
    error = refused(bytes(data))
    assert error.code == "prompt_corrupt"
    assert "announces" in error.message
    # the streaming convention (unknown size) is not a lie
    struct.pack_into("<I", data, offset + 4, 0xFFFFFFFF)
    assert intake(bytes(data)).report.seconds > 5


def test_intake_is_a_plain_result(speech: Speech) -> None:
    result = intake(encode(speech.long))
    assert isinstance(result, Intake)
    assert set(result.report.to_dict()) == {
        "container",
        "codec",
        "original_sample_rate",
        "channels",
        "original_seconds",
        "seconds",
        "trimmed_start_s",
        "trimmed_end_s",
        "peak_dbfs",
        "gain_db",
        "clipped_fraction",
        "snr_db",
        "warnings",
    }
