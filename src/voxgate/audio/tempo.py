"""Tempo change without pitch change, for engines that cannot do speed natively.

Uses ffmpeg's ``atempo`` filter through PyAV (WSOLA, streaming). It is also
how voxgate honours ``speed`` where an engine only supports it in whole mode
(CosyVoice refuses speed with streaming): the engine streams at 1.0 and the
stretch happens here, chunk by chunk.
"""

from __future__ import annotations

import math
from fractions import Fraction

import av
import av.filter
import numpy as np

from voxgate.audio.pcm import Samples

ATEMPO_MIN = 0.5
ATEMPO_MAX = 100.0


def _stages(factor: float) -> list[float]:
    """Split a factor into atempo stages, each within its 0.5-100 range."""
    stages: list[float] = []
    while factor < ATEMPO_MIN:
        stages.append(ATEMPO_MIN)
        factor /= ATEMPO_MIN
    stages.append(factor)
    return stages


class TempoStretcher:
    """Streaming tempo change: push chunks, get stretched chunks back."""

    def __init__(self, sample_rate: int, factor: float) -> None:
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"tempo factor must be positive, got {factor}")
        self.factor = factor
        self.sample_rate = sample_rate
        self._pts = 0
        self._graph = av.filter.Graph()
        self._src = self._graph.add_abuffer(
            sample_rate=sample_rate,
            format="flt",
            layout="mono",
            time_base=Fraction(1, sample_rate),
        )
        node = self._src
        for stage in _stages(factor):
            nxt = self._graph.add("atempo", f"tempo={stage:.6f}")
            node.link_to(nxt)
            node = nxt
        self._sink = self._graph.add("abuffersink")
        node.link_to(self._sink)
        self._graph.configure()

    def process(self, samples: Samples) -> Samples:
        if samples.size == 0:
            return samples
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1),
            format="flt",
            layout="mono",
        )
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += samples.size
        self._src.push(frame)
        return self._drain()

    def flush(self) -> Samples:
        self._src.push(None)
        return self._drain()

    def _drain(self) -> Samples:
        out: list[Samples] = []
        while True:
            try:
                frame = self._sink.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            assert isinstance(frame, av.AudioFrame)
            out.append(frame.to_ndarray().reshape(-1).astype(np.float32, copy=False))
        if not out:
            return np.zeros(0, dtype=np.float32)
        return out[0] if len(out) == 1 else np.concatenate(out)
