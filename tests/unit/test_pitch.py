"""The F0 tracker and voice profile on signals whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from voxgate.audio.pitch import median_f0, profile, track


def harmonic(f0: float | np.ndarray, rate: int, seconds: float = 1.0) -> np.ndarray:
    """A buzz with 10 harmonics falling at 6 dB per octave: a glottal source."""
    n = int(seconds * rate)
    freq = np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(freq) / rate
    x = sum((1.0 / k) * np.sin(k * phase + 0.3 * k) for k in range(1, 11))
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.mark.parametrize("f0", [90.0, 150.0, 240.0])
@pytest.mark.parametrize("rate", [16000, 22050, 48000])
def test_finds_known_f0(f0: float, rate: int) -> None:
    found = median_f0(harmonic(f0, rate), rate)
    assert found is not None
    assert found == pytest.approx(f0, rel=0.02)


def test_a_missing_fundamental_is_still_the_fundamental() -> None:
    """Telephone-band voices lack the fundamental; the period is still there."""
    rate = 16000
    t = np.arange(rate) / rate
    x = sum(np.sin(2 * np.pi * k * 120.0 * t) for k in range(3, 9)).astype(np.float32)
    found = median_f0(0.1 * x, rate)
    assert found == pytest.approx(120.0, rel=0.02)


def test_noise_and_silence_are_unvoiced() -> None:
    rng = np.random.default_rng(7)
    for rate in (16000, 48000):
        noise = (0.2 * rng.standard_normal(2 * rate)).astype(np.float32)
        assert median_f0(noise, rate) is None
        assert not track(noise, rate).voiced.any()
    assert median_f0(np.zeros(48000, np.float32), 48000) is None
    assert median_f0(np.zeros(100, np.float32), 48000) is None  # shorter than one frame


def test_voiced_and_unvoiced_frames_are_told_apart() -> None:
    rate = 16000
    rng = np.random.default_rng(3)
    voiced = harmonic(200.0, rate, 0.5)
    hiss = (0.1 * rng.standard_normal(rate // 2)).astype(np.float32)
    pitch = track(np.concatenate([voiced, hiss, voiced]), rate)
    flags = pitch.voiced
    assert flags[5:45].all()  # inside the first tone (away from its edges)
    assert not flags[55:95].any()  # inside the hiss
    assert flags[105:145].all()


def test_profile_spread_and_syllable_rate() -> None:
    rate = 22050
    seconds = 4.0
    n = int(seconds * rate)
    # F0 gliding from 100 to 200 Hz (one octave) at a constant rate in semitones
    f0 = 100.0 * 2.0 ** (np.arange(n) / n)
    # 4 "syllables" per second: a raised-cosine envelope with 60 ms gaps, too
    # short to be pauses, so they count as speaking time
    t = np.arange(n) / rate
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t) ** 2 * 1.4 - 0.2, 0.0, 1.0)
    found = profile(harmonic(f0, rate, seconds) * envelope.astype(np.float32), rate)
    assert found is not None
    assert found.median_f0 == pytest.approx(100 * 2**0.5, rel=0.05)
    assert found.spread_semitones == pytest.approx(12 * 0.8, abs=1.0)  # 10th to 90th percentile
    assert found.syllables_per_second == pytest.approx(4.0, rel=0.1)
    assert 0 < found.voiced_seconds < seconds
    assert set(found.to_dict()) == {
        "median_f0",
        "spread_semitones",
        "syllables_per_second",
        "voiced_seconds",
    }
    assert profile(np.zeros(rate, np.float32), rate) is None


def test_pauses_do_not_slow_the_speaking_rate() -> None:
    rate = 16000
    t = np.arange(2 * rate) / rate
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t) ** 2 * 1.4 - 0.2, 0.0, 1.0)  # 5 per second
    talk = harmonic(130.0, rate, 2.0) * envelope.astype(np.float32)
    pause = np.zeros(rate, np.float32)
    steady = profile(np.concatenate([talk, talk]), rate)
    paused = profile(np.concatenate([talk, pause, talk, pause]), rate)
    assert steady is not None
    assert paused is not None
    assert steady.syllables_per_second == pytest.approx(5.0, rel=0.1)
    assert paused.syllables_per_second == pytest.approx(steady.syllables_per_second, rel=0.05)
