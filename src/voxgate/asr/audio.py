"""Prompt audio made ready for a recognizer, or the reason there is nothing to hear."""

from __future__ import annotations

import numpy as np

from voxgate.asr.base import TranscriptionUnavailable
from voxgate.audio.pcm import Samples, sanitize
from voxgate.audio.resample import resample

SAMPLE_RATE = 16000  # what all three model families were trained on
# Quieter than this is no speech. Recognizers do not say so themselves:
# pocketsphinx hears "i'm" in digital silence, Whisper famously "Thank you."
SILENT_PEAK = 10 ** (-60 / 20)
NO_WORDS = "no words recognized"


def to_model_audio(samples: Samples, sample_rate: int) -> Samples:
    """Finite float32 mono at 16 kHz. Runs in a recognizer's thread or
    process: resampling 15 s of 48 kHz audio is not for the event loop."""
    if sample_rate <= 0:
        raise TranscriptionUnavailable(f"invalid sample rate {sample_rate}")
    audio = sanitize(samples)
    if audio.size == 0:
        raise TranscriptionUnavailable(f"{NO_WORDS}: the audio is empty")
    if float(np.max(np.abs(audio))) < SILENT_PEAK:
        raise TranscriptionUnavailable(f"{NO_WORDS}: the audio is silent")
    return np.ascontiguousarray(resample(audio, sample_rate, SAMPLE_RATE), dtype=np.float32)
