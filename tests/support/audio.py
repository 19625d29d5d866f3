"""Decoding what the server sends, with PyAV, as an independent check."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

from voxgate.audio.formats import AudioFormat, info


@dataclass
class Decoded:
    samples: np.ndarray  # float32 mono
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def decode(data: bytes, fmt: AudioFormat | str, pcm_rate: int = 24000) -> Decoded:
    fmt = AudioFormat(fmt)
    if fmt is AudioFormat.PCM:
        ints = np.frombuffer(data, dtype="<i2")
        return Decoded(ints.astype(np.float32) / 32768.0, pcm_rate)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray() for f in container.decode(stream)]
        rate = stream.codec_context.sample_rate
    if not frames:
        return Decoded(np.zeros(0, np.float32), rate)
    arr = np.concatenate(
        [f.reshape(f.shape[0], -1) if f.ndim > 1 else f[None, :] for f in frames], axis=1
    )
    mono = arr.mean(axis=0) if arr.shape[0] > 1 else arr[0]
    if mono.dtype.kind == "i":
        mono = mono.astype(np.float32) / float(np.iinfo(mono.dtype).max + 1)
    return Decoded(mono.astype(np.float32), rate)


def priming(fmt: AudioFormat | str) -> int:
    return info(AudioFormat(fmt)).priming_samples


def expected_decode_rate(fmt: AudioFormat | str, rate: int) -> int:
    """Opus always decodes at 48 kHz; everything else at the rate it carries."""
    return 48000 if AudioFormat(fmt) is AudioFormat.OPUS else rate
