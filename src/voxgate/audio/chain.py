"""What happens to an engine's samples before encoding: make them safe
(finite, in range), apply the gain and tempo the engine could not, and
convert to the output rate. Stateful per request, chunk by chunk."""

from __future__ import annotations

import numpy as np

from voxgate.audio.pcm import Samples, apply_gain, sanitize
from voxgate.audio.resample import StreamResampler
from voxgate.audio.tempo import TempoStretcher


class PostProcessor:
    def __init__(self, in_rate: int, out_rate: int, *, tempo: float = 1.0, gain: float = 1.0):
        self._gain = gain
        self._stretcher = TempoStretcher(in_rate, tempo) if tempo != 1.0 else None
        self._resampler = StreamResampler(in_rate, out_rate)

    def process(self, samples: Samples) -> Samples:
        x = apply_gain(sanitize(samples), self._gain)
        if self._stretcher is not None:
            x = self._stretcher.process(x)
        return self._resampler.process(x)

    def flush(self) -> Samples:
        parts = []
        if self._stretcher is not None:
            parts.append(self._resampler.process(self._stretcher.flush()))
        parts.append(self._resampler.flush())
        return np.concatenate(parts)
