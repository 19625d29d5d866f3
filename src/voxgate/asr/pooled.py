"""Recognizers in threads the transcriber owns: a pool of loaded models, audio
made ready for them, and every failure turned into a reason.

For libraries that let go of the GIL while they compute (torch for FunASR,
CTranslate2 for faster-whisper); pocketsphinx does not, and runs in worker
processes instead (:mod:`voxgate.asr.pocketsphinx`).

Each call runs in one of the transcriber's ``concurrency`` threads
(:class:`~voxgate.engines.threaded.BlockingStreams`: bounded, and a slot
stays taken until its thread is really done, even when the caller gave up).
Inside the thread it checks a model out of a pool, so each thread has a
model to itself, unless the library is thread-safe (faster-whisper): then
the pool holds the same model ``concurrency`` times. Resampling happens in
the thread too: nothing that scales with the audio runs on the event loop.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

from voxgate.asr.audio import NO_WORDS, to_model_audio
from voxgate.asr.base import Transcriber, Transcript, TranscriptionUnavailable
from voxgate.audio.pcm import Samples
from voxgate.engines.threaded import BlockingStreams
from voxgate.errors import EngineUnavailable

log = logging.getLogger(__name__)

M = TypeVar("M")


class PooledTranscriber(Transcriber, Generic[M]):
    """A transcriber whose blocking model calls run in threads it owns.

    Subclasses say how to load models (:meth:`_load_models`) and how one
    model turns 16 kHz audio into a :class:`Transcript` (:meth:`_recognize`).
    """

    def __init__(self, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f"asr {self.kind}: concurrency must be at least 1")
        self.concurrency = concurrency
        self._streams = BlockingStreams(f"asr-{self.kind}", concurrency)
        self._models: queue.Queue[M] = queue.Queue()
        self._loaded = False
        self._not_loaded = "it is not started"

    @property
    def busy(self) -> int:
        """Threads inside a model call, including calls whose caller gave up."""
        return self._streams.busy

    # -- what a recognizer provides --------------------------------------------

    @abc.abstractmethod
    def _load_models(self) -> list[M]:
        """Runs in a thread: ``concurrency`` models (or one, repeated, when
        its library allows concurrent calls). Raise :class:`EngineUnavailable`
        with a hint for what a person must fix."""

    @abc.abstractmethod
    def _recognize(self, model: M, audio: Samples, language: str | None) -> Transcript:
        """Runs in a thread: 16 kHz float32 audio in. Raise what you like:
        anything but :class:`TranscriptionUnavailable` becomes one."""

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        try:
            models = await asyncio.to_thread(self._load_models)
        except EngineUnavailable as exc:
            self._not_loaded = f"loading it failed: {exc.message}"
            raise
        except Exception as exc:
            self._not_loaded = f"loading it failed: {exc}"
            raise EngineUnavailable(
                f"asr {self.kind}: loading the model failed: {exc}",
                hint="Run `voxgate doctor` for what is missing.",
            ) from exc
        for model in models:
            self._models.put(model)
        self._loaded = True

    async def close(self) -> None:
        self._loaded = False
        self._not_loaded = "it is closed"
        self._streams.shutdown()

    # -- transcription -----------------------------------------------------------

    async def transcribe(
        self, samples: Samples, sample_rate: int, language: str | None = None
    ) -> Transcript:
        code = self._requested_language(language)
        if not self._loaded:
            raise TranscriptionUnavailable(f"{self.kind} cannot transcribe: {self._not_loaded}")

        def produce(stop: threading.Event) -> Iterator[Transcript]:
            yield self._call(samples, sample_rate, code)

        results = [t async for t in self._streams.stream(produce)]
        return results[0]

    def _call(self, samples: Samples, sample_rate: int, language: str | None) -> Transcript:
        """Runs in one of the transcriber's threads."""
        audio = to_model_audio(samples, sample_rate)
        model = self._models.get()  # never waits: a model per thread slot
        try:
            transcript = self._recognize(model, audio, language)
        except TranscriptionUnavailable:
            raise
        except Exception as exc:
            log.warning("asr %s failed on a prompt", self.kind, exc_info=True)
            raise TranscriptionUnavailable(f"{self.kind} failed: {exc}") from exc
        finally:
            self._models.put(model)
        if not transcript.text.strip():
            raise TranscriptionUnavailable(NO_WORDS)
        return transcript
