"""A simulated GPU speech engine, for measuring and breaking the gateway.

This is a stand-in for what cannot run here (a GPU, CosyVoice weights), so it
models what matters to a server in front of such a model:

* **time to first chunk** (``first_chunk_ms``) and **real-time factor**
  (``rtf``: seconds of compute per second of audio), delivered in chunks of
  ``chunk_ms`` audio, with optional **jitter**;
* a **shared capacity** of ``capacity`` requests at full speed. Beyond it,
  ``saturation="degrade"`` slows every running request in proportion (a GPU
  interleaving batch-1 kernels), ``saturation="queue"`` makes the extra
  requests wait for a slot;
* **faults**, by probability (``fault_rates``) or on demand with a marker in
  the text (for tests): ``#fault:before`` fails before the first chunk,
  ``#fault:mid`` after some audio, ``#fault:hang`` produces nothing at all,
  ``#fault:stall`` stops producing after some audio, ``#fault:nan`` puts NaN
  and Inf samples in the audio, ``#fault:exit`` kills the process after some
  audio (only in a ``voxgate worker`` process: a crashing engine; elsewhere
  it fails like ``mid``, so it can never take a gateway down);
* **text that is still arriving** (``EngineRequest.text_stream``, as CosyVoice
  2/3 take it): each sentence is spoken as soon as it is complete, and one
  whose text the engine had to wait for starts like a new request
  (``first_chunk_ms``).

Its audio is deterministic for a given text, speaker and speed: a tone pattern
derived from the text (:func:`tone_pattern`), so a test can tell which request
got which audio. All waiting is ``asyncio.sleep``: a simulated request costs
the event loop almost nothing, which is what lets it measure the gateway's own
overhead.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import heapq
import os
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from voxgate.audio.pcm import Samples
from voxgate.engines.base import AudioChunk, Capabilities, Engine, EngineRequest, Mode, Speaker
from voxgate.errors import EngineError
from voxgate.text.incremental import sentence_end
from voxgate.text.markup import Feature, parse
from voxgate.text.normalize import normalize
from voxgate.text.split import Segment, split

FAULTS = ("before", "mid", "hang", "stall", "nan", "exit")
SPEAKERS = (
    Speaker("sim-female", "Simulated female", "zh", "female", "tone pattern, 220 Hz base",
            ("中文女", "英文女", "alloy", "nova")),
    Speaker("sim-male", "Simulated male", "zh", "male", "tone pattern, 110 Hz base",
            ("中文男", "英文男", "echo", "onyx")),
)  # fmt: skip
_BASE_HZ = {"sim-female": 220.0, "sim-male": 110.0}
SECONDS_PER_CHAR = 0.06


def segment_seconds(segment: Segment, speed: float) -> float:
    """How long a segment's audio lasts: about 16 characters a second."""
    return max(0.2, len(segment.plain) * SECONDS_PER_CHAR) / speed


@functools.lru_cache(maxsize=256)
def tone_pattern(text: str, seconds: float, sample_rate: int, base_hz: float) -> Samples:
    """Deterministic audio for a text: a tone per 100 ms block, its pitch drawn
    from a hash of the text, with short fades so blocks do not click.

    Cached: benchmarks repeat texts, and the cost of making fake audio should
    not show up as the gateway's overhead. The array is read-only."""
    n = round(seconds * sample_rate)
    digest = hashlib.sha256(text.encode()).digest()
    block = sample_rate // 10
    out = np.zeros(n, dtype=np.float32)
    fade = min(block // 8, 64)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    for i, start in enumerate(range(0, n, block)):
        length = min(block, n - start)
        step = digest[i % len(digest)] % 12
        freq = base_hz * 2 ** (step / 12)
        t = np.arange(length, dtype=np.float32) / sample_rate
        tone = 0.3 * np.sin(2 * np.pi * freq * t, dtype=np.float32)
        if length > 2 * fade:
            tone[:fade] *= ramp
            tone[-fade:] *= ramp[::-1]
        out[start : start + length] = tone
    out.setflags(write=False)
    return out


class SharedGpu:
    """Processor sharing: ``capacity`` jobs run at full speed; with n > capacity
    every job advances at capacity/n. Exact, event driven: a virtual clock
    counts the work a single job has received, and one timer fires for the job
    whose work completes first (all jobs progress at the same rate, so the
    order of completion is the order of their targets on that clock)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._virtual = 0.0
        self._at = time.monotonic()
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._active = 0
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def active(self) -> int:
        return self._active

    def _rate(self) -> float:
        return 1.0 if self._active <= self.capacity else self.capacity / self._active

    def _advance(self) -> None:
        now = time.monotonic()
        self._virtual += (now - self._at) * self._rate()
        self._at = now

    async def work(self, seconds: float) -> None:
        if seconds <= 0:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self._advance()
        rate_before = self._rate()
        done: asyncio.Future[None] = loop.create_future()
        self._seq += 1
        entry = (self._virtual + seconds, self._seq, done)
        heapq.heappush(self._heap, entry)
        self._active += 1
        # The armed timer stays right unless this job finishes first or the
        # service rate changed (it does only while saturated).
        if self._timer is None or self._heap[0] is entry or self._rate() != rate_before:
            self._reschedule(loop)
        try:
            await done
        finally:
            if not done.done():  # cancelled: leave the heap lazily, stop counting now
                done.cancel()
                self._advance()
                self._active -= 1
                self._reschedule(loop)

    def _reschedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._heap and self._heap[0][2].done():
            heapq.heappop(self._heap)
        if self._heap:
            delay = max(0.0, (self._heap[0][0] - self._virtual) / self._rate())
            self._timer = loop.call_at(loop.time() + delay, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._advance()
        while self._heap and self._heap[0][0] <= self._virtual + 1e-9:
            _, _, done = heapq.heappop(self._heap)
            if not done.done():
                self._active -= 1
                done.set_result(None)
        self._reschedule(loop)


class SimulatedEngine(Engine):
    kind = "simulated"

    def __init__(
        self,
        name: str = "simulated",
        *,
        first_chunk_ms: float = 150.0,
        rtf: float = 0.1,
        chunk_ms: float = 200.0,
        capacity: int = 4,
        saturation: Literal["degrade", "queue"] = "degrade",
        max_concurrency: int | None = None,
        jitter: float = 0.0,
        sample_rate: int = 24000,
        fault_rates: Mapping[str, float] | None = None,
        hang_s: float = 3600.0,
        seed: int = 0,
    ) -> None:
        super().__init__(name)
        if saturation not in ("degrade", "queue"):
            raise ValueError("saturation must be 'degrade' or 'queue'")
        unknown = set(fault_rates or {}) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULTS}")
        self.first_chunk_s = first_chunk_ms / 1000
        self.rtf = rtf
        self.chunk_s = chunk_ms / 1000
        self.capacity = capacity
        self.saturation = saturation
        self.jitter = jitter
        self.fault_rates = dict(fault_rates or {})
        self.hang_s = hang_s
        self._sample_rate = sample_rate
        self._running = 0
        self._produced_s = 0.0  # audio handed out, all requests: shows a paused consumer
        self._slots = asyncio.Semaphore(capacity) if saturation == "queue" else None
        self._gpu = SharedGpu(capacity)
        self._rng = random.Random(seed)
        self._capabilities = Capabilities(
            modes=frozenset(Mode),
            languages=frozenset({"zh", "en", "ja", "ko", "yue"}),
            sample_rate=sample_rate,
            streaming=True,
            # Admission capacity: by default, let the simulated GPU's own
            # saturation behaviour show; the admission queue sits in front.
            max_concurrency=max_concurrency or capacity,
            speed_range=(0.5, 2.0),
            markup=frozenset(Feature),
            text_streaming=True,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def speakers(self) -> Sequence[Speaker]:
        return SPEAKERS

    def describe(self) -> dict[str, Any]:
        return {
            "first_chunk_ms": self.first_chunk_s * 1000,
            "rtf": self.rtf,
            "chunk_ms": self.chunk_s * 1000,
            "capacity": self.capacity,
            "saturation": self.saturation,
            "running": self._running,
            "produced_audio_s": round(self._produced_s, 3),
        }

    def segment_audio(self, request: EngineRequest, segment: Segment) -> Samples:
        speaker = request.speaker or SPEAKERS[0]
        return tone_pattern(
            segment.text,
            segment_seconds(segment, request.speed),
            self._sample_rate,
            _BASE_HZ.get(speaker.id, 220.0),
        )

    def expected_audio(self, request: EngineRequest) -> list[Samples]:
        """The audio each segment of a request yields (what tests compare with)."""
        return [self.segment_audio(request, segment) for segment in request.segments]

    def _fault(self, request: EngineRequest) -> str | None:
        text = " ".join(s.plain for s in request.segments)
        for kind in FAULTS:
            if f"#fault:{kind}" in text:
                return kind
        for kind, rate in self.fault_rates.items():
            if self._rng.random() < rate:
                return kind
        return None

    def _jittered(self, seconds: float) -> float:
        if not self.jitter:
            return seconds
        return max(0.0, seconds * (1.0 + self._rng.uniform(-self.jitter, self.jitter)))

    async def _compute(self, seconds: float) -> None:
        """Spend ``seconds`` of simulated GPU time (longer while saturated)."""
        await self._gpu.work(self._jittered(seconds))

    async def _synthesize(self, request: EngineRequest) -> AsyncIterator[AudioChunk]:
        fault = self._fault(request)
        if self._slots is not None:
            await self._slots.acquire()
        self._running += 1
        try:
            async for chunk in self._produce(request, fault):
                yield chunk
        finally:
            self._running -= 1
            if self._slots is not None:
                self._slots.release()

    async def _produce(
        self, request: EngineRequest, fault: str | None
    ) -> AsyncIterator[AudioChunk]:
        await self._compute(self.first_chunk_s)
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
        if fault == "before":
            raise EngineError("simulated engine failure before the first chunk")
        per_chunk = max(1, round(self.chunk_s * self._sample_rate))
        sent = 0
        first = True
        async for index, segment, waited in self._segments(request):
            samples = self.segment_audio(request, segment)  # one segment at a time
            first = first or waited
            for start in range(0, len(samples), per_chunk):
                piece = samples[start : start + per_chunk]
                if not first:
                    await self._compute(len(piece) / self._sample_rate * self.rtf)
                elif sent:  # text it had to wait for: a new start
                    await self._compute(self.first_chunk_s)
                first = False
                if fault == "exit" and sent > 0 and os.environ.get("VOXGATE_WORKER_ID"):
                    os._exit(1)  # a worker process whose engine crashes outright
                if fault in ("mid", "exit") and sent > 0:
                    raise EngineError("simulated engine failure mid-stream")
                if fault == "stall" and sent > 0:
                    await asyncio.sleep(self.hang_s)
                if fault == "nan":
                    piece = piece.copy()
                    piece[:: max(1, len(piece) // 7)] = np.nan
                    piece[1 :: max(1, len(piece) // 5)] = np.inf
                sent += len(piece)
                self._produced_s += len(piece) / self._sample_rate
                yield AudioChunk(piece, index)

    async def _segments(self, request: EngineRequest) -> AsyncIterator[tuple[int, Segment, bool]]:
        """The request's segments, then those of its text stream, each sentence
        once complete; the flag says whether the engine waited for its text."""
        for index, segment in enumerate(request.segments):
            yield index, segment, False
        if request.text_stream is None:
            return
        index = len(request.segments)
        loop = asyncio.get_running_loop()
        text, waited = "", False
        asked = loop.time()
        async for piece in request.text_stream:
            waited = waited or loop.time() - asked > 0.002
            text += piece
            end = sentence_end(text, self._capabilities.max_segment_chars)
            ready, text = (text[:end], text[end:]) if end else ("", text)
            for segment in self._split(ready):
                yield index, segment, waited
                index, waited = index + 1, False
            asked = loop.time()
        for segment in self._split(text):
            yield index, segment, waited
            index, waited = index + 1, False

    def _split(self, text: str) -> list[Segment]:
        limit = self._capabilities.max_segment_chars
        return split(parse(normalize(text)), max_chars=limit, first_max_chars=limit)
