from __future__ import annotations

import numpy as np
import pytest

from tests.support.audio import decode, expected_decode_rate, priming
from voxgate.audio.encoders import make_encoder, wav_header
from voxgate.audio.formats import AudioFormat, nearest_rate, rate_allowed
from voxgate.audio.pcm import apply_gain, clip, from_s16le, sanitize, to_s16le
from voxgate.audio.resample import StreamResampler, resample
from voxgate.audio.tempo import TempoStretcher

ALL = list(AudioFormat)


def tone(rate: int, seconds: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode(fmt: AudioFormat, x: np.ndarray, rate: int, *, whole: bool, chunk: int = 1000) -> bytes:
    enc = make_encoder(fmt, rate, whole=whole)
    parts = [enc.encode(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    parts.append(enc.finish())
    if whole:
        assert all(p == b"" for p in parts[:-1]), "whole mode returns everything at the end"
    return b"".join(parts)


@pytest.mark.parametrize("fmt", ALL)
@pytest.mark.parametrize("rate", [16000, 24000, 48000])
@pytest.mark.parametrize("seconds", [0.05, 1.337])
def test_every_format_decodes_to_the_input_length(
    fmt: AudioFormat, rate: int, seconds: float
) -> None:
    x = tone(rate, seconds)
    for whole in (False, True):
        d = decode(encode(fmt, x, rate, whole=whole), fmt, pcm_rate=rate)
        assert d.sample_rate == expected_decode_rate(fmt, rate)
        produced = d.duration - priming(fmt) / rate
        assert abs(produced - seconds) <= 0.050, (fmt, whole, produced, seconds)
        assert produced >= seconds - 0.001, "no tail may be lost"


@pytest.mark.parametrize("fmt", [AudioFormat.FLAC, AudioFormat.WAV, AudioFormat.PCM])
def test_lossless_formats_are_exact(fmt: AudioFormat) -> None:
    x = tone(24000, 0.7)
    expected = from_s16le(to_s16le(x))
    for whole in (False, True):
        d = decode(encode(fmt, x, 24000, whole=whole), fmt)
        assert np.array_equal(d.samples, expected)


@pytest.mark.parametrize("fmt", [AudioFormat.MP3, AudioFormat.OPUS, AudioFormat.AAC])
def test_lossy_stream_and_whole_are_the_same_bytes(fmt: AudioFormat) -> None:
    x = tone(24000, 0.9)
    assert encode(fmt, x, 24000, whole=False, chunk=777) == encode(fmt, x, 24000, whole=True)


def test_streamed_wav_has_one_header_with_unknown_sizes() -> None:
    data = encode(AudioFormat.WAV, tone(22050, 0.3), 22050, whole=False, chunk=100)
    assert data.count(b"RIFF") == 1
    assert data[:44] == wav_header(22050, None)
    assert data[40:44] == b"\xff\xff\xff\xff"


def test_empty_streams_are_valid_files() -> None:
    for fmt in ALL:
        enc = make_encoder(fmt, 24000)
        data = enc.finish()
        if fmt is AudioFormat.WAV:
            assert data == wav_header(24000, None)
        elif fmt is not AudioFormat.PCM:
            assert len(decode(data, fmt).samples) <= 2048 if data else True


def test_mp3_has_no_xing_frame() -> None:
    data = encode(AudioFormat.MP3, tone(24000, 1.0), 24000, whole=True)
    assert b"Xing" not in data[:2000]
    assert b"Info" not in data[:2000]
    assert data[:2] == b"\xff\xf3"  # starts with an audio frame, no ID3 either


def test_opus_pages_leave_as_audio_is_encoded() -> None:
    enc = make_encoder(AudioFormat.OPUS, 24000)
    x = tone(24000, 2.0)
    sizes = [len(enc.encode(x[i : i + 4800])) for i in range(0, len(x), 4800)]
    assert sum(1 for s in sizes if s) >= 8, sizes  # not one page per second


def test_sanitize() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 1.5, -2.0, 0.25], dtype=np.float32)
    assert sanitize(x).tolist() == [0.0, 0.0, 0.0, 1.5, -2.0, 0.25]
    assert clip(sanitize(x)).tolist() == [0.0, 0.0, 0.0, 1.0, -1.0, 0.25]
    ints = np.frombuffer(to_s16le(np.array([1.0, -1.0, 0.5], np.float32)), "<i2")
    assert ints.tolist() == [32767, -32768, 16384]
    assert apply_gain(np.array([0.6], np.float32), 2.0).tolist() == [1.0]


def test_chunked_resampling_equals_whole() -> None:
    x = tone(22050, 1.0, 440)
    rs = StreamResampler(22050, 24000)
    chunks = [rs.process(x[i : i + 3001]) for i in range(0, len(x), 3001)] + [rs.flush()]
    streamed = np.concatenate(chunks)
    whole = resample(x, 22050, 24000)
    assert len(streamed) == len(whole) == 24000
    assert np.allclose(streamed, whole, atol=1e-5)


@pytest.mark.parametrize("factor", [0.25, 0.5, 0.8, 1.5, 2.57, 4.0])
def test_tempo_changes_duration_not_pitch(factor: float) -> None:
    rate = 22050
    x = tone(rate, 2.0, 300)
    ts = TempoStretcher(rate, factor)
    y = np.concatenate([ts.process(x[i : i + 2205]) for i in range(0, len(x), 2205)] + [ts.flush()])
    assert len(y) / len(x) == pytest.approx(1 / factor, rel=0.05)
    spectrum = np.abs(np.fft.rfft(y[: rate // 2]))
    peak = np.argmax(spectrum) * rate / (2 * len(spectrum) - 2)
    assert peak == pytest.approx(300, rel=0.03)


def test_rates() -> None:
    assert rate_allowed(AudioFormat.WAV, 22050)
    assert not rate_allowed(AudioFormat.OPUS, 22050)
    assert nearest_rate(AudioFormat.OPUS, 22050) == 24000
    assert nearest_rate(AudioFormat.OPUS, 44100) == 48000
    assert nearest_rate(AudioFormat.MP3, 22050) == 22050


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_out_of_range_samples_are_clipped_not_wrapped(fmt: AudioFormat) -> None:
    hot = 1.8 * tone(24000, 1.0, 200) / 0.4  # a hot engine: peaks at 1.8
    clipped = np.clip(hot, -1.0, 1.0)
    enc = make_encoder(fmt, 24000, whole=True)
    enc.encode(hot)
    d = decode(enc.finish(), fmt)
    assert np.isfinite(d.samples).all()
    if fmt in (AudioFormat.PCM, AudioFormat.WAV, AudioFormat.FLAC):
        assert np.abs(d.samples - clipped).max() <= 1 / 32768 + 1e-6
    else:  # lossy: close to the clipped wave (wrapping around would destroy it)
        lag = priming(fmt) * d.sample_rate // 24000
        step = d.sample_rate // 24000
        got = d.samples[lag : lag + 24000 * step : step][: len(clipped)]
        assert np.corrcoef(got, clipped[: len(got)])[0, 1] > 0.97
