"""Pitch and pace of a voice: what an engine that cannot clone can still imitate.

The F0 tracker is YIN (de Cheveigné & Kawahara, 2002) computed for all frames
at once with FFTs, in numpy: the cumulative mean normalized difference
function has no octave-too-low bias of plain autocorrelation, and its dip
depth doubles as a voicing measure. Signals are first brought to 16 kHz
(soxr, already the resampler of every other path): voice F0 lies below
500 Hz, so a higher rate would only make every frame three times as long.

The speaking rate counts syllable nuclei, the intensity peaks of voiced
stretches with a dip on either side (after de Jong & Wempe, 2009), per second
of speaking time: pauses are left out, so the same voice with longer
pauses between sentences has the same rate. It is an estimate that is
meaningful when compared with the same estimate of another recording, which is
how the espeak engine uses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from voxgate.audio.pcm import Samples
from voxgate.audio.resample import resample

ANALYSIS_RATE = 16000
HOP_S = 0.010
F0_MIN, F0_MAX = 60.0, 500.0  # deep male voices to children and high sopranos
_WINDOW = 480  # 30 ms integration window at 16 kHz: at least 1.8 periods of F0_MIN
# First dip of the normalized difference below this is the period (YIN's
# absolute threshold); a frame whose best dip stays above _VOICED is unvoiced.
# Measured on espeak speech: its loud frames dip to 0.03-0.05 (10th
# percentile) and 0.1-0.2 (median), and 0.3 calls two thirds to four fifths
# of them voiced (the rest are fricatives and transitions); white noise
# never went below 0.77 in 10 s.
_DIP = 0.15
_VOICED = 0.3
_GATE_DB = 40.0  # frames this far below the loudest speech are silence
_NUCLEUS_DIP_DB = 2.0  # intensity must fall this much between two syllables
_PAUSE_S = 0.3  # a silence longer than this is a pause, not part of speaking time


@dataclass(frozen=True, slots=True)
class PitchTrack:
    """One value per 10 ms frame; ``f0`` is NaN where the frame is unvoiced."""

    f0: NDArray[np.float64]
    aperiodicity: NDArray[np.float64]  # YIN's dip depth: 0 periodic, ~1 noise
    level_db: NDArray[np.float64]  # frame RMS, dBFS
    hop_s: float = HOP_S

    @property
    def voiced(self) -> NDArray[np.bool_]:
        return np.isfinite(self.f0)


@dataclass(frozen=True, slots=True)
class VoiceProfile:
    """What the espeak engine imitates of a prompt: where the voice sits, how
    much it moves, and how fast it talks."""

    median_f0: float  # Hz
    spread_semitones: float  # 10th to 90th percentile of F0
    syllables_per_second: float  # per second of speaking time, pauses excluded
    voiced_seconds: float

    def to_dict(self) -> dict[str, float]:
        return {
            "median_f0": round(self.median_f0, 1),
            "spread_semitones": round(self.spread_semitones, 2),
            "syllables_per_second": round(self.syllables_per_second, 2),
            "voiced_seconds": round(self.voiced_seconds, 2),
        }


def _at_analysis_rate(samples: Samples, rate: int) -> NDArray[np.float64]:
    x = resample(np.asarray(samples, dtype=np.float32), rate, ANALYSIS_RATE)
    return np.asarray(x, dtype=np.float64)


def track(samples: Samples, rate: int) -> PitchTrack:
    """F0 of every 10 ms frame (YIN), NaN where unvoiced or silent."""
    x = _at_analysis_rate(samples, rate)
    hop = round(HOP_S * ANALYSIS_RATE)
    tau_min = int(ANALYSIS_RATE / F0_MAX)
    tau_max = math.ceil(ANALYSIS_RATE / F0_MIN)
    length = _WINDOW + tau_max + 1
    empty = np.zeros(0)
    if len(x) < length:
        return PitchTrack(empty, empty, empty)
    frames = sliding_window_view(x, length)[::hop]
    n_fft = 1 << (length - 1).bit_length()  # lags stop short of the end: no wrap-around
    head = np.fft.rfft(frames[:, :_WINDOW], n_fft)
    whole = np.fft.rfft(frames, n_fft)
    corr = np.fft.irfft(np.conj(head) * whole, n_fft)[:, : tau_max + 1]
    power = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    energy = power[:, _WINDOW : _WINDOW + tau_max + 1] - power[:, : tau_max + 1]
    diff = np.maximum(energy[:, :1] + energy - 2.0 * corr, 0.0)
    running = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    lags = np.arange(1, tau_max + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd[:, 1:] = np.where(running > 0, diff[:, 1:] * lags / running, 1.0)

    # The period: the first local minimum below _DIP, else the deepest dip.
    body = cmnd[:, tau_min : tau_max + 1]
    inner = body[:, 1:-1]
    is_min = (inner <= body[:, :-2]) & (inner <= body[:, 2:])
    candidates = is_min & (inner < _DIP)
    first = np.where(candidates.any(axis=1), candidates.argmax(axis=1), inner.argmin(axis=1))
    rows = np.arange(len(frames))
    tau = first + tau_min + 1
    depth = cmnd[rows, tau]
    left, right = cmnd[rows, tau - 1], cmnd[rows, np.minimum(tau + 1, tau_max)]
    curve = left - 2.0 * depth + right
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curve > 0, 0.5 * (left - right) / curve, 0.0)
    period = tau + np.clip(shift, -1.0, 1.0)

    rms = np.sqrt(energy[:, 0] / _WINDOW)
    level_db = 20.0 * np.log10(np.maximum(rms, 1e-10))
    loud = float(np.percentile(level_db, 99)) if len(level_db) else -200.0
    voiced = (depth < _VOICED) & (level_db > loud - _GATE_DB) & (level_db > -90.0)
    f0 = np.where(voiced, ANALYSIS_RATE / period, np.nan)
    return PitchTrack(f0, depth, level_db)


def median_f0(samples: Samples, rate: int) -> float | None:
    """Median F0 of the voiced frames in Hz; None when fewer than 100 ms are voiced
    (noise, whispering, silence), where a median would be a guess."""
    f0 = track(samples, rate).f0
    voiced = f0[np.isfinite(f0)]
    if len(voiced) < 10:
        return None
    return float(np.median(voiced))


def _smooth(values: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    kernel = np.ones(width) / width
    padded = np.pad(values, width // 2, mode="edge")
    return np.convolve(padded, kernel, mode="valid")[: len(values)]


def syllable_nuclei(pitch: PitchTrack) -> int:
    """Intensity peaks in voiced speech with a dip of 2 dB or more between them."""
    if len(pitch.level_db) < 3:
        return 0
    level = _smooth(pitch.level_db, 5)  # 50 ms: one peak per vowel, not per glottal pulse
    floor = max(float(np.median(level)), float(np.percentile(level, 99)) - 25.0)
    voiced_near = _smooth(pitch.voiced.astype(np.float64), 5) > 0
    is_peak = (level[1:-1] > level[:-2]) & (level[1:-1] >= level[2:]) & (level[1:-1] > floor)
    count = 0
    current = -math.inf  # the syllable being counted: its loudest point so far
    dip = math.inf  # the lowest level since that point
    previous = 0
    for index in (int(i) + 1 for i in np.flatnonzero(is_peak)):
        dip = min(dip, float(level[previous : index + 1].min()))
        previous = index
        value = float(level[index])
        if not voiced_near[index]:
            continue
        if count == 0 or (current - dip >= _NUCLEUS_DIP_DB and value - dip >= _NUCLEUS_DIP_DB):
            count += 1
            current, dip = value, math.inf
        elif value > current:
            current, dip = value, math.inf  # the same syllable, louder here
    return count


def speaking_seconds(pitch: PitchTrack) -> float:
    """Time from the first to the last sound, without pauses over 300 ms."""
    if len(pitch.level_db) == 0:
        return 0.0
    loud = float(np.percentile(pitch.level_db, 99))
    active = pitch.level_db > loud - _GATE_DB + 10.0
    indices = np.flatnonzero(active)
    if len(indices) == 0:
        return 0.0
    gaps = np.diff(indices) - 1
    long_gaps = gaps[gaps * pitch.hop_s > _PAUSE_S]
    frames = indices[-1] - indices[0] + 1 - int(long_gaps.sum())
    return float(frames * pitch.hop_s)


def profile(samples: Samples, rate: int) -> VoiceProfile | None:
    """The voice profile of a recording; None when it holds too little voiced speech."""
    pitch = track(samples, rate)
    f0 = pitch.f0[pitch.voiced]
    if len(f0) < 10:
        return None
    low, mid, high = np.percentile(f0, [10, 50, 90])
    seconds = speaking_seconds(pitch)
    nuclei = syllable_nuclei(pitch)
    return VoiceProfile(
        median_f0=float(mid),
        spread_semitones=float(12.0 * math.log2(high / low)),
        syllables_per_second=nuclei / seconds if seconds > 0 else 0.0,
        voiced_seconds=len(f0) * pitch.hop_s,
    )
