"""Voice prompt files for tests: real speech from the embedded engine, in real
containers written by PyAV (never a renamed WAV)."""

from __future__ import annotations

import asyncio
import io
import wave
from functools import lru_cache

import av
import numpy as np

from voxgate.audio.resample import resample
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.espeak.engine import EspeakEngine
from voxgate.text.markup import parse
from voxgate.text.split import split

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs back home again."

# container -> (PyAV format, codec, sample rate the codec wants or None)
CONTAINERS: dict[str, tuple[str, str, int | None]] = {
    "wav": ("wav", "pcm_s16le", None),
    "mp3": ("mp3", "libmp3lame", None),
    "ogg": ("ogg", "libopus", 48000),
    "flac": ("flac", "flac", None),
    "m4a": ("mp4", "aac", None),
    "webm": ("webm", "libopus", 48000),
}


@lru_cache(maxsize=16)
def speech(text: str = SENTENCE, speaker: str = "en-us-m3", rate: int = 24000) -> np.ndarray:
    """Speech samples at ``rate`` from the embedded engine (read-only array)."""

    async def run() -> tuple[np.ndarray, int]:
        engine = EspeakEngine()
        await engine.start()
        try:
            found = next(s for s in engine.speakers() if s.id == speaker)
            request = EngineRequest("t", Mode.SFT, tuple(split(parse(text))), found)
            chunks = [c.samples async for c in engine.synthesize(request)]
            return np.concatenate(chunks), engine.capabilities.sample_rate
        finally:
            await engine.close()

    samples, native = asyncio.run(run())
    out = resample(samples, native, rate).astype(np.float32)
    out.setflags(write=False)
    return out


def encode(samples: np.ndarray, rate: int, container: str, *, channels: int = 1) -> bytes:
    """A complete audio file in ``container`` (see CONTAINERS)."""
    fmt, codec, codec_rate = CONTAINERS[container]
    if codec_rate and codec_rate != rate:
        samples, rate = resample(samples, rate, codec_rate), codec_rate
    layout = "mono" if channels == 1 else "stereo"
    data = np.clip(samples, -1, 1).astype(np.float32)
    planar = np.tile(data, (channels, 1))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, planar.shape[1], frame_size):
            block = planar[:, start : start + frame_size]
            if block.shape[1] < frame_size and codec in ("libopus", "aac", "libmp3lame"):
                block = np.pad(block, ((0, 0), (0, frame_size - block.shape[1])))
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def wav_bytes(samples: np.ndarray, rate: int, *, channels: int = 1) -> bytes:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    if channels > 1:
        pcm = np.repeat(pcm, channels)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buffer.getvalue()
