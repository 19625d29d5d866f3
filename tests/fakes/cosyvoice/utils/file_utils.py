"""Stand-in for cosyvoice.utils.file_utils: ``load_wav`` with upstream's contract
(path or file-like, mono mix, resample, assert at least ``min_sr``)."""

from __future__ import annotations

import io
import logging
import wave
from typing import Any

import numpy as np
import torch

logging.basicConfig(level=logging.INFO)


def load_wav(wav: Any, target_sr: int, min_sr: int = 16000) -> torch.Tensor:
    if isinstance(wav, (bytes, bytearray)):
        wav = io.BytesIO(wav)
    if hasattr(wav, "seek"):
        wav.seek(0)  # soundfile (upstream's backend) reads file objects from the start
    with wave.open(wav, "rb") as w:
        sample_rate = w.getframerate()
        channels = w.getnchannels()
        raw = w.readframes(w.getnframes())
    data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    data = data.reshape(-1, channels).mean(axis=1)
    if sample_rate != target_sr:
        assert sample_rate >= min_sr, (
            f"wav sample rate {sample_rate} must be greater than {target_sr}"
        )
        n = round(len(data) * target_sr / sample_rate)
        data = np.interp(np.linspace(0, len(data) - 1, n), np.arange(len(data)), data)
    return torch.from_numpy(data.astype(np.float32)).unsqueeze(0)
