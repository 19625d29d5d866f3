"""An engine that speaks text as it arrives, for testing ``text_stream``
across processes (no engine here consumes it but CosyVoice, whose weights
cannot exist on these machines).

Each segment, then each piece of streamed text, becomes one chunk whose
samples are the text's UTF-8 bytes / 256, so a test reads back exactly what
was said and in which order. Load it as kind
``tests.support.text_engine:TextEchoEngine``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import numpy as np

from voxgate.audio.pcm import Samples
from voxgate.engines.base import AudioChunk, Capabilities, Engine, EngineRequest, Mode, Speaker

SPEAKER = Speaker("echo", "Echo", "en")


def encode(text: str) -> Samples:
    return np.frombuffer(text.encode(), dtype=np.uint8).astype(np.float32) / 256


def decode(samples: Samples) -> str:
    return bytes(np.round(samples * 256).astype(np.uint8)).decode()


class TextEchoEngine(Engine):
    kind = "text-echo"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            modes=frozenset({Mode.SFT}),
            languages=frozenset({"en"}),
            sample_rate=16000,
            streaming=True,
            max_concurrency=2,
            text_streaming=True,
        )

    def speakers(self) -> Sequence[Speaker]:
        return (SPEAKER,)

    async def _synthesize(self, request: EngineRequest) -> AsyncIterator[AudioChunk]:
        for segment in request.segments:
            yield AudioChunk(encode(segment.text), segment.index)
        index = len(request.segments)
        if request.text_stream is not None:
            async for piece in request.text_stream:
                yield AudioChunk(encode(piece), index)
                index += 1
