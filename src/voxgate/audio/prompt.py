"""Voice prompts: the 3-15 s of speech a cloning engine imitates.

Decoded with PyAV whatever the container (never trusting a file name or a
content type), mixed to mono, and kept at its own rate: each engine takes
the rate it needs (CosyVoice reads 16 kHz for tokens and 24 kHz for features).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

from voxgate import errors
from voxgate.audio.encoders import wav_header
from voxgate.audio.pcm import Samples, from_s16le, sanitize, to_s16le
from voxgate.audio.resample import resample
from voxgate.errors import RequestError

MIN_RATE = 16000  # CosyVoice asserts at least 16 kHz
MAX_SECONDS = 30.0  # CosyVoice asserts at most 30 s


@dataclass(frozen=True, slots=True)
class PromptAudio:
    samples: Samples  # float32 mono
    sample_rate: int
    text: str | None = None  # what is said in it (the transcript)
    voice_id: str | None = None  # a registered voice, whose features an engine may cache

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def at_rate(self, rate: int) -> Samples:
        return resample(self.samples, self.sample_rate, rate)

    def wav(self, rate: int | None = None) -> bytes:
        """A 16-bit mono WAV file, for engines that read prompt files."""
        rate = rate or self.sample_rate
        pcm = to_s16le(np.clip(self.at_rate(rate), -1.0, 1.0))
        return wav_header(rate, len(pcm)) + pcm

    def pcm16(self, rate: int) -> bytes:
        """Headerless int16 samples at ``rate`` (CosyVoice's gRPC prompt_audio)."""
        return to_s16le(np.clip(self.at_rate(rate), -1.0, 1.0))


def decode_audio(data: bytes, *, param: str = "prompt") -> tuple[Samples, int]:
    """Any audio file to mono float32 samples and their rate."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            stream = container.streams.audio[0]
            chunks: list[np.ndarray] = []
            rate = 0
            for frame in container.decode(stream):
                rate = frame.sample_rate
                arr = frame.to_ndarray()
                if arr.dtype.kind == "i":
                    arr = arr.astype(np.float32) / float(2 ** (8 * arr.dtype.itemsize - 1))
                if frame.format.is_planar:
                    mono = arr.reshape(len(frame.layout.channels), -1).mean(axis=0)
                else:
                    mono = arr.reshape(-1, len(frame.layout.channels)).mean(axis=1)
                chunks.append(mono.astype(np.float32))
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise RequestError(
            f"the {param} is not audio voxgate can decode ({exc})",
            code=errors.PROMPT_INVALID,
            hint="Send WAV, MP3, Ogg/Opus, FLAC, AAC/M4A or WebM audio.",
            param=param,
        ) from None
    if not chunks or rate == 0:
        raise RequestError(
            f"the {param} contains no audio",
            code=errors.PROMPT_INVALID,
            hint="Send a recording of 3-15 seconds of speech.",
            param=param,
        )
    return sanitize(np.concatenate(chunks)), rate


def prompt_from_bytes(
    data: bytes, text: str | None = None, *, pcm16_rate: int | None = None, param: str = "prompt"
) -> PromptAudio:
    """A prompt from an uploaded file, or from raw int16 PCM when ``pcm16_rate`` is given."""
    if pcm16_rate is not None:
        samples, rate = from_s16le(data[: len(data) // 2 * 2]), pcm16_rate
    else:
        samples, rate = decode_audio(data, param=param)
    prompt = PromptAudio(samples, rate, text=text or None)
    check_prompt(prompt, param=param)
    return prompt


def check_prompt(prompt: PromptAudio, *, param: str = "prompt") -> None:
    if prompt.sample_rate < MIN_RATE:
        raise RequestError(
            f"the {param} is sampled at {prompt.sample_rate} Hz; at least {MIN_RATE} Hz is needed",
            code=errors.PROMPT_SAMPLE_RATE,
            hint="Record or export the prompt at 16 kHz or more (44.1 or 48 kHz is ideal).",
            param=param,
        )
    if prompt.duration > MAX_SECONDS:
        raise RequestError(
            f"the {param} is {prompt.duration:.1f} s; at most {MAX_SECONDS:.0f} s is allowed",
            code=errors.PROMPT_TOO_LONG,
            hint="Cut it to 3-15 seconds of clear speech.",
            param=param,
        )
    if prompt.duration < 0.5:
        raise RequestError(
            f"the {param} is {prompt.duration:.2f} s; at least a few seconds of speech are needed",
            code=errors.PROMPT_TOO_SHORT,
            hint="Send 3-15 seconds of clear speech.",
            param=param,
        )
