"""Incremental text sessions: text arrives in pieces (an LLM's tokens), audio
leaves as one stream. Shared by the WebSocket ``/v1/audio/speech/stream``
and gRPC ``StreamingSynthesize``; each only translates messages.

Synthesis starts as soon as the text so far holds a complete sentence
(:func:`voxgate.text.incremental.sentence_end`), and then:

* an engine that takes text while it arrives (``text_streaming``: CosyVoice
  2/3, the simulated engine) gets **one** synthesis: that first text, then an
  ``EngineRequest.text_stream`` that yields each complete word as it arrives,
  lowered to the markup the engine renders. One admission slot, one engine
  call for the whole session;
* any other engine gets one synthesis per batch of complete sentences, as
  each completes, each through :meth:`Pipeline.prepare` (admission per
  batch, so a session waiting for text holds no slot).

Either way the audio goes through **one** encoder: one Ogg/Opus stream (or
one raw PCM stream) for the whole session, however many syntheses made it.

Everything is pulled: the engine produces the next chunk only when the
surface asks for it, and the surfaces ask only when the client has taken the
last one, so a slow reader pauses the engine instead of filling memory. The
text a session may hold is bounded by ``VOXGATE_WS_MAX_TEXT_CHARS``.

Characters count against the daily quota as they arrive (the syntheses are
prepared without a principal, so nothing is counted twice); a session that
produced no audio at all is refunded, as a refused HTTP request is.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from voxgate import errors
from voxgate.audio.encoders import Encoder, make_encoder
from voxgate.audio.pcm import Samples
from voxgate.engines.base import Engine
from voxgate.errors import RequestError
from voxgate.pipeline import Pipeline, Synthesis, SynthesisRequest, Usage
from voxgate.serving.quota import Reservation
from voxgate.text.incremental import sentence_end, word_end
from voxgate.text.lowering import lower
from voxgate.text.markup import Feature, has_content, parse, render
from voxgate.text.normalize import normalize
from voxgate.voices import ResolvedVoice

_SPACES = re.compile(r" {2,}")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def clean_piece(piece: str, markup: frozenset[Feature]) -> str:
    """A piece of streamed text as an engine should get it: normalized and
    lowered like a whole text, keeping one space at either end where it had
    whitespace (pieces are concatenated by the engine)."""
    core = normalize(piece)
    lead = " " if piece[:1].isspace() else ""
    trail = " " if piece[-1:].isspace() else ""
    if not core:
        return lead or trail
    if "[" in core or "<" in core:
        nodes, _ = lower(parse(core), markup)
        core = _SPACES.sub(" ", render(nodes)).strip(" ")  # where a dropped tag stood
    return lead + core + trail


class TextSession:
    """One session. ``open`` checks the configuration; the surface then
    ``feed``s text, ``finish``es, and iterates :meth:`audio` (once) in a
    task of its own; ``aclose`` when done, whatever happened."""

    def __init__(self, pipeline: Pipeline, template: SynthesisRequest, *, max_chars: int) -> None:
        """``template``: everything but the text (its ``principal`` is whose
        quota the characters count against)."""
        self._pipeline = pipeline
        self._principal = template.principal
        # The syntheses count no quota (the session does) and take any length.
        self._template = replace(template, text="", principal=None, max_chars=max_chars)
        self._max_chars = max_chars
        self.request_id = template.request_id
        self.format = template.format
        self.engine: Engine | None = None
        self.voice: ResolvedVoice | None = None
        self.sample_rate = 0
        self._streams_text = False
        # text
        self._pending = ""  # arrived, not yet handed to an engine
        self._received = 0
        self._done = False
        self._changed = asyncio.Event()
        self._reservations: list[Reservation] = []
        # idleness (see idle_s)
        self._waiting = False
        self._wait_since = time.monotonic()
        self._active_at = time.monotonic()
        # accounting
        self._started = time.perf_counter()
        self._first_text: float | None = None
        self._last_text: float | None = None
        self._first_audio: float | None = None
        self._after_last_text: float | None = None
        self._ended: float | None = None
        self._samples = 0
        self._queued_s = 0.0
        self._syntheses = 0
        self._closed = False

    # -- configuration ---------------------------------------------------------------

    async def open(self) -> None:
        """Refuse a bad configuration (voice, engine, mode, format, ranges)
        before any text: the checks of ``Pipeline.prepare`` that need none."""
        self.engine, self.sample_rate, self.voice = await self._pipeline.check(self._template)
        self._streams_text = self.engine.capabilities.text_streaming

    @property
    def streams_text(self) -> bool:
        """Whether the engine takes the text while it arrives (one synthesis)."""
        return self._streams_text

    # -- text in ---------------------------------------------------------------------

    async def feed(self, text: str) -> None:
        if self._done:
            raise RequestError(
                "text after input.done",
                code=errors.UNEXPECTED_MESSAGE,
                hint="Send all text before input.done; start a new session for more.",
            )
        self.touch()
        if not text:
            return
        if self._received + len(text) > self._max_chars:
            raise RequestError(
                f"the session's text exceeds {self._max_chars} characters",
                code=errors.TEXT_TOO_LONG,
                hint="Start a new session for more text, use a job for long texts, "
                "or raise VOXGATE_WS_MAX_TEXT_CHARS.",
                param="text",
            )
        quota = self._pipeline.quota
        if quota is not None and self._principal is not None:
            charge = await quota.reserve(self._principal, len(text))
            if charge is not None:
                self._reservations.append(charge)
        now = time.perf_counter()
        if self._first_text is None:
            self._first_text = now
        self._last_text, self._after_last_text = now, None
        self._received += len(text)
        self._pending += text
        self._changed.set()

    def finish(self) -> None:
        """No more text (``input.done``)."""
        self.touch()
        self._done = True
        self._changed.set()

    @property
    def finished(self) -> bool:
        return self._done

    # -- idleness --------------------------------------------------------------------

    def touch(self) -> None:
        """The client did something: sent a message, or took a piece of audio
        (a text-streaming engine may hold all the text sent so far and wait
        for more while it is still speaking: that is not idleness)."""
        self._active_at = time.monotonic()

    def idle_s(self) -> float:
        """How long the session has been waiting for text the client has not
        sent, with no message from it and no audio taken; 0 while a synthesis
        works towards its next chunk. A send that waits for a slow reader is
        backpressure, not idleness (a client that stops reading altogether
        is dropped by the server's keepalive pings, which wait behind the
        audio)."""
        if not self._waiting or self._done:
            return 0.0
        return time.monotonic() - max(self._active_at, self._wait_since)

    # -- audio out -------------------------------------------------------------------

    async def audio(self) -> AsyncGenerator[bytes, None]:
        """The session's audio as one encoded stream. Closing it stops the
        engine at once and frees its admission slot."""
        assert self.engine is not None, "open() first"
        encoder = make_encoder(self.format, self.sample_rate, whole=False)
        finished = False
        try:
            async with contextlib.aclosing(self._pcm()) as chunks:
                async for samples in chunks:
                    data = await self._encode(encoder, encoder.encode, samples)
                    self._samples = encoder.samples_in
                    if data:
                        self._mark_audio()
                        yield data
            tail = await self._encode(encoder, encoder.finish)
            finished = True
            if tail:
                self._mark_audio()
                yield tail
        finally:
            self._ended = time.perf_counter()
            if not finished:
                _close_later(encoder)

    async def _encode(self, encoder: Encoder, step: Callable[..., bytes], *args: Any) -> bytes:
        # Opus costs milliseconds per chunk: off the event loop, like the pipeline's.
        if encoder.cpu_bound:
            return await asyncio.to_thread(step, *args)
        return step(*args)

    async def _pcm(self) -> AsyncGenerator[Samples, None]:
        if self._streams_text:
            first = await self._take(sentence=True)
            if first is None:
                raise _nothing_to_say()
            async with contextlib.aclosing(self._run(first, self._units())) as chunks:
                async for samples in chunks:
                    yield samples
            return
        while (text := await self._take(sentence=True)) is not None:
            async with contextlib.aclosing(self._run(text, None)) as chunks:
                async for samples in chunks:
                    yield samples
        if not self._syntheses:
            raise _nothing_to_say()

    async def _run(
        self, text: str, stream: AsyncIterator[str] | None
    ) -> AsyncGenerator[Samples, None]:
        self._syntheses += 1
        req = replace(self._template, text=text, request_id=f"{self.request_id}.{self._syntheses}")
        synthesis: Synthesis = await self._pipeline.prepare(req, text_stream=stream)
        try:
            if synthesis.sample_rate != self.sample_rate:  # the engine changed under us
                raise errors.VoxgateError("the engine's sample rate changed during the session")
            async with contextlib.aclosing(synthesis.pcm()) as chunks:  # type: ignore[type-var]
                async for samples in chunks:
                    yield samples
        finally:
            await synthesis.aclose()
            self._queued_s += synthesis.usage.queued_s

    async def _units(self) -> AsyncIterator[str]:
        """The text stream of a text-streaming engine: complete words as they arrive."""
        assert self.engine is not None
        markup = self.engine.capabilities.markup
        while (piece := await self._take(sentence=False)) is not None:
            yield clean_piece(piece, markup)

    async def _take(self, *, sentence: bool) -> str | None:
        """The next text an engine may have (complete sentences, or words),
        waiting for it; None when the text is over. In sentence mode, text
        with nothing to say (a closing quote) waits for more, and is dropped
        at the end."""
        assert self.engine is not None
        segment_chars = self.engine.capabilities.max_segment_chars
        while True:
            text = self._pending
            if self._done:
                self._pending = ""
                if text and (not sentence or has_content(parse(text))):
                    return text
                return None
            end = sentence_end(text, segment_chars) if sentence else word_end(text)
            if end and (not sentence or has_content(parse(text[:end]))):
                self._pending = text[end:]
                return text[:end]
            self._changed.clear()
            self._waiting, self._wait_since = True, time.monotonic()
            try:
                await self._changed.wait()
            finally:
                self._waiting = False

    def _mark_audio(self) -> None:
        now = time.perf_counter()
        if self._first_audio is None:
            self._first_audio = now
        if self._last_text is not None and self._after_last_text is None:
            self._after_last_text = now - self._last_text

    # -- the end ---------------------------------------------------------------------

    @property
    def audio_seconds(self) -> float:
        return self._samples / self.sample_rate if self.sample_rate else 0.0

    def summary(self) -> dict[str, Any]:
        """Usage and timings (milliseconds): first audio counts from the first
        text, total from the session's start."""
        ended = self._ended or time.perf_counter()
        first = (
            None
            if self._first_audio is None or self._first_text is None
            else self._first_audio - self._first_text
        )
        return {
            "usage": {"characters": self._received, "audio_seconds": round(self.audio_seconds, 3)},
            "timings": {
                "first_audio_ms": _ms(first),
                "total_ms": _ms(ended - self._started),
                "last_text_to_first_audio_ms": _ms(self._after_last_text),
            },
        }

    def usage(self) -> Usage:
        """The session as metrics and tracing see a request (obs/observer.py)."""
        begun = self._first_text or self._started
        ended = self._ended or time.perf_counter()
        return Usage(
            characters=self._received,
            samples=self._samples,
            sample_rate=self.sample_rate,
            started_at=begun,
            queued_s=self._queued_s,
            priority=self._template.priority,
            first_audio_s=None if self._first_audio is None else self._first_audio - begun,
            total_s=ended - begun,
        )

    async def aclose(self) -> None:
        """Refund the quota of a session that produced no audio at all."""
        if self._closed:
            return
        self._closed = True
        if self._samples == 0:
            for charge in self._reservations:
                await charge.refund()


def idle_error(limit: float, hint: str) -> RequestError:
    """What ends a session whose client went quiet (``VOXGATE_WS_IDLE_TIMEOUT_S``)."""
    return RequestError(
        f"no message from the client for {limit:g} s while the session waited for it",
        code=errors.SESSION_IDLE_TIMEOUT,
        hint=f"{hint} (VOXGATE_WS_IDLE_TIMEOUT_S).",
    )


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel a surface's task and wait until it has really stopped (the
    engine with it). Whatever it ended with is no longer of interest; the
    cancellation of the caller itself is, and goes on."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        pass  # a failure that ended it was reported where it mattered


def _nothing_to_say() -> RequestError:
    return RequestError(
        "the session ended without text to speak",
        code=errors.TEXT_EMPTY,
        hint="Send at least one word with input.text before input.done.",
        param="text",
    )


def _close_later(encoder: Encoder) -> None:
    """Close an abandoned encoder without making the event loop wait for an
    encode still running in a thread (its lock would)."""
    if not encoder.cpu_bound:
        encoder.close()
        return
    try:
        asyncio.get_running_loop().run_in_executor(None, encoder.close)
    except RuntimeError:  # no loop, or its executor is shut down: we are exiting
        encoder.close()
