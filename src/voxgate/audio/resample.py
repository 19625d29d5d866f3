"""Streaming sample-rate conversion (soxr), stateful per request."""

from __future__ import annotations

import numpy as np
import soxr

from voxgate.audio.pcm import Samples


class StreamResampler:
    """Converts a chunked stream from one rate to another without seams.

    soxr keeps filter state between chunks, so resampling chunk by chunk gives
    the same samples as resampling the whole signal, which is what lets a
    streamed response decode to exactly what the whole response holds.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        )

    def process(self, samples: Samples) -> Samples:
        if self._stream is None:
            return samples
        out = self._stream.resample_chunk(samples, last=False)
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def flush(self) -> Samples:
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return np.asarray(out, dtype=np.float32).reshape(-1)


def resample(samples: Samples, in_rate: int, out_rate: int) -> Samples:
    """One-shot conversion of a whole signal."""
    if in_rate == out_rate:
        return samples
    return np.asarray(soxr.resample(samples, in_rate, out_rate, quality="HQ"), dtype=np.float32)
