"""The engine protocol (DESIGN rule 2).

An engine declares what it can do (:class:`Capabilities`) and turns one
:class:`EngineRequest` into an async stream of float32 mono PCM chunks at its
native sample rate. Everything else (text splitting, lowering unsupported
markup, tempo and volume it cannot do, resampling, encoding, admission) is
the pipeline's job, so an engine adapter stays small.

Engines own their blocking work: they run it in threads or processes they
manage and never block the event loop (DESIGN rule 3). When the consumer
stops iterating (client gone), the generator is closed and the engine must
stop the work it started and free its slot.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from voxgate.audio.pcm import Samples
from voxgate.audio.prompt import PromptAudio
from voxgate.diagnostics import Check
from voxgate.text.markup import Feature
from voxgate.text.split import Segment


class Mode(StrEnum):
    """CosyVoice's inference modes."""

    SFT = "sft"
    ZERO_SHOT = "zero_shot"
    CROSS_LINGUAL = "cross_lingual"
    INSTRUCT = "instruct"


@dataclass(frozen=True, slots=True)
class Capabilities:
    modes: frozenset[Mode]
    languages: frozenset[str]
    sample_rate: int
    streaming: bool  # audio leaves before a segment is fully synthesized
    max_concurrency: int
    # Tempo range the engine applies itself; the pipeline stretches the rest.
    speed_range: tuple[float, float] | None = None
    pitch: bool = False  # honours a pitch shift in semitones
    volume: bool = False  # honours a volume factor
    markup: frozenset[Feature] = frozenset()
    text_streaming: bool = False  # accepts text while it arrives
    max_segment_chars: int = 200
    # Modes in which the engine needs a voice prompt (speech to imitate).
    prompt_modes: frozenset[Mode] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {
            "modes": sorted(self.modes),
            "languages": sorted(self.languages),
            "sample_rate": self.sample_rate,
            "streaming": self.streaming,
            "text_streaming": self.text_streaming,
            "max_concurrency": self.max_concurrency,
            "speed_range": list(self.speed_range) if self.speed_range else None,
            "pitch": self.pitch,
            "volume": self.volume,
            "markup": sorted(self.markup),
            "prompt_modes": sorted(self.prompt_modes),
        }


@dataclass(frozen=True, slots=True)
class Speaker:
    """A voice an engine offers by itself (CosyVoice's SFT speakers)."""

    id: str
    name: str
    language: str
    gender: str | None = None
    description: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the caller should know: an instruction not honoured, markup
    approximated. Sent as ``X-Voxgate-Warning`` headers (ASCII only)."""

    code: str
    message: str

    def header(self) -> str:
        text = f"{self.code}: {self.message}"
        return text.encode("ascii", "replace").decode("ascii")


@dataclass(frozen=True, slots=True)
class EngineRequest:
    request_id: str
    mode: Mode
    segments: Sequence[Segment]
    speaker: Speaker | None
    instruct: str | None = None
    prompt: PromptAudio | None = None
    language: str | None = None
    speed: float = 1.0  # within capabilities.speed_range
    pitch: float = 0.0  # semitones, only if capabilities.pitch
    volume: float = 1.0  # only if capabilities.volume
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    # Text still arriving (an LLM's tokens), for engines with text_streaming:
    # pieces are spoken as they come, after ``segments`` (usually empty).
    text_stream: AsyncIterator[str] | None = None


class FeatureStore(Protocol):
    """Saved voice features, for engines that can reuse them across restarts
    (synchronous: engines call it from their own threads)."""

    def load(self, voice_id: str, key: str) -> bytes | None: ...
    def save(self, voice_id: str, key: str, data: bytes) -> None: ...
    def delete_voice(self, voice_id: str) -> int: ...


@dataclass(frozen=True, slots=True)
class AudioChunk:
    samples: Samples  # float32, mono, native rate
    segment: int  # index of the segment it belongs to


@dataclass(slots=True)
class EngineStats:
    """Live counters, exposed by ``GET /v1/engines`` and metrics."""

    active: int = 0
    started: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "active": self.active,
            "started": self.started,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
        }


class Engine(abc.ABC):
    """Base class with the bookkeeping every engine shares."""

    kind: str = ""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = EngineStats()
        self._ready = False
        self.features: FeatureStore | None = None  # set by the app when there is a store

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abc.abstractmethod
    def speakers(self) -> Sequence[Speaker]: ...

    async def start(self) -> None:
        """Load models, start helpers. Called once before serving."""
        self._ready = True

    async def close(self) -> None:
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def healthy(self) -> bool | None:
        """For engines that call a server: whether its last health probe
        passed (None before the first). None for engines without one."""
        return None

    def check(self, request: EngineRequest) -> list[Notice]:
        """Validate a request before admission; raise a RequestError or return
        notices for what will be approximated. Cheap and side-effect free."""
        return []

    def watch_capacity(self, listener: Callable[[int], None]) -> None:  # noqa: B027 - optional
        """Engines whose capacity changes while serving (workers that come and
        go) call ``listener`` with the new ``max_concurrency``, so admission
        follows. Most engines' capacity is fixed: they never call it."""

    def default_speaker(self) -> Speaker | None:
        speakers = self.speakers()
        return speakers[0] if speakers else None

    def describe(self) -> Mapping[str, Any]:
        """Engine-specific facts for ``GET /v1/engines`` (model, version...)."""
        return {}

    async def prepare_voice(self, prompt: PromptAudio) -> bool:
        """Compute and keep what this engine needs from a registered voice's
        prompt (``prompt.voice_id`` is set), so its first use is fast. Return
        whether anything was prepared; engines that keep nothing return False."""
        return False

    async def forget_voice(self, voice_id: str) -> None:  # noqa: B027 - optional hook
        """Drop everything kept for a voice (it was deleted or changed)."""

    async def diagnose(self) -> list[Check]:
        """What this engine needs and whether it is there (``voxgate doctor``).
        Must not load models: check what a load would need."""
        return []

    async def synthesize(self, request: EngineRequest) -> AsyncGenerator[AudioChunk, None]:
        """Synthesize with bookkeeping; engines implement :meth:`_synthesize`."""
        self.stats.active += 1
        self.stats.started += 1
        outcome = "cancelled"
        try:
            async for chunk in self._synthesize(request):
                yield chunk
            outcome = "completed"
        except GeneratorExit:
            raise
        except BaseException as exc:
            outcome = "cancelled" if _is_cancel(exc) else "failed"
            raise
        finally:
            self.stats.active -= 1
            if outcome == "completed":
                self.stats.completed += 1
            elif outcome == "failed":
                self.stats.failed += 1
            else:
                self.stats.cancelled += 1

    @abc.abstractmethod
    def _synthesize(self, request: EngineRequest) -> AsyncIterator[AudioChunk]: ...


def _is_cancel(exc: BaseException) -> bool:
    import asyncio

    return isinstance(exc, asyncio.CancelledError | GeneratorExit)


def empty_chunk(segment: int) -> AudioChunk:
    return AudioChunk(np.zeros(0, dtype=np.float32), segment)
