"""Driving CosyVoice engines on the stand-in model (tests/fakes/cosyvoice)."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np

from tests.support.procs import FAKES
from voxgate.audio.prompt import PromptAudio
from voxgate.engines.base import AudioChunk, Engine, EngineRequest, Mode, Speaker
from voxgate.text.markup import parse
from voxgate.text.split import Segment, split


def stand_in() -> Any:
    """The stand-in's ``cosyvoice.cli.cosyvoice`` module, imported as upstream's."""
    if str(FAKES) not in sys.path:
        sys.path.insert(0, str(FAKES))
    module = importlib.import_module("cosyvoice.cli.cosyvoice")
    assert str(FAKES) in str(module.__file__), "a real cosyvoice package shadows the stand-in"
    return module


def make_fast() -> None:
    """The stand-in polls every 0.1 s like upstream; tests need no such wait."""
    model = importlib.import_module("cosyvoice.cli.model")
    model.POLL_S = 0.005
    model.TOKEN_S = 0.0002


PROMPT_TEXT = "希望你以后能够做的比我还好呦。"


def voice_prompt(
    seconds: float = 3.0,
    rate: int = 16000,
    text: str | None = PROMPT_TEXT,
    voice_id: str | None = None,
) -> PromptAudio:
    """A deterministic 'recording': a few tones with an envelope."""
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    samples = 0.3 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 0.7 * t)) * t)
    samples *= 0.6 + 0.4 * np.sin(2 * np.pi * 2.1 * t) ** 2
    return PromptAudio(samples.astype(np.float32), rate, text=text, voice_id=voice_id)


def segments(text: str, max_chars: int = 80, first: int = 80) -> tuple[Segment, ...]:
    return tuple(split(parse(text), max_chars=max_chars, first_max_chars=first))


def request(
    text: str,
    mode: Mode,
    *,
    speaker: Speaker | None = None,
    prompt: PromptAudio | None = None,
    instruct: str | None = None,
    request_id: str = "r",
    max_chars: int = 80,
) -> EngineRequest:
    return EngineRequest(
        request_id=request_id,
        mode=mode,
        segments=segments(text, max_chars, max_chars),
        speaker=speaker,
        prompt=prompt,
        instruct=instruct,
    )


async def collect(engine: Engine, req: EngineRequest) -> list[AudioChunk]:
    return [chunk async for chunk in engine.synthesize(req)]


def join(chunks: Sequence[AudioChunk]) -> np.ndarray:
    return np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, np.float32)


async def first_chunk(stream: AsyncIterator[AudioChunk]) -> AudioChunk:
    return await anext(stream)


def direct(outputs: Any) -> np.ndarray:
    """Concatenated audio of an upstream generator."""
    return np.concatenate([o["tts_speech"].numpy().reshape(-1) for o in outputs])


async def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``within_s`` passes (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
