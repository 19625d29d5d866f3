"""SynthesisRequest -> encoded audio chunks: the one path every surface uses.

Two phases, so that every 4xx and every 503 is answered before a response
starts:

1. :meth:`Pipeline.prepare` validates the request against the engine's
   capabilities, normalizes, lowers and splits the text, resolves the voice,
   plans tempo/volume/resampling, and takes an admission slot. With the
   result cache on, the slot is taken later, before the first byte, and only
   by a synthesis that really runs (not by a cache hit, nor by a request that
   joins an identical one in flight): see :mod:`voxgate.serving.results`.
2. The returned :class:`Synthesis` streams (or collects) encoded audio and
   releases its slot when it ends, fails, or is closed because the client
   went away, which also closes the engine's generator and stops its work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import urllib.parse
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from voxgate import errors
from voxgate.audio.chain import PostProcessor
from voxgate.audio.encoders import Encoder, make_encoder
from voxgate.audio.formats import AudioFormat, info, nearest_rate, rate_allowed
from voxgate.audio.pcm import Samples
from voxgate.audio.prompt import PromptAudio
from voxgate.config import EngineConfig, Settings
from voxgate.engines.base import Engine, EngineRequest, Mode, Notice
from voxgate.engines.registry import EngineRegistry
from voxgate.errors import EngineTimeout, EngineUnavailable, RequestError
from voxgate.serving.admission import Admission, AdmissionControl, Priority, Slot
from voxgate.serving.cache import CachePolicy
from voxgate.serving.principal import Principal
from voxgate.serving.quota import CharacterQuota
from voxgate.serving.redis import RedisConnection
from voxgate.serving.shared_admission import SharedAdmission
from voxgate.store.models import DEFAULT_TENANT
from voxgate.text.lowering import lower
from voxgate.text.markup import Feature, has_content, parse
from voxgate.text.normalize import normalize
from voxgate.text.split import split
from voxgate.voices import ResolvedVoice, VoiceDirectory
from voxgate.voices.library import VoiceLibrary
from voxgate.voices.plan import VoicePlan, plan_voice

if TYPE_CHECKING:
    from voxgate.serving.results import Results

SPEED_RANGE = (0.25, 4.0)
PITCH_RANGE = (-12.0, 12.0)
VOLUME_RANGE = (0.0, 2.0)

_LOWERED_NOTICE = {
    Feature.EVENTS: "this engine has no event tags such as [laughter]; they were left out",
    Feature.EMPHASIS: "this engine has no <strong> emphasis; the words are read plainly",
    Feature.PINYIN: "pinyin annotations were replaced by a character with that reading",
    Feature.ARPABET: "ARPAbet annotations are not supported by this engine and were left out",
    Feature.CONTROL: "<|...|> control tokens are engine syntax and were removed",
}


@dataclass(frozen=True, slots=True)
class SynthesisRequest:
    """What every surface translates its wire format into (DESIGN rule 1)."""

    text: str
    voice: str | None = None
    engine: str | None = None
    mode: Mode | None = None  # None: from the voice (sft, or zero_shot for a registered voice)
    instruct: str | None = None
    language: str | None = None
    speed: float = 1.0
    pitch: float = 0.0
    volume: float = 1.0
    format: AudioFormat = AudioFormat.WAV
    sample_rate: int | None = None
    seed: int = 0
    prompt: PromptAudio | None = None  # speech to imitate (zero_shot, cross_lingual...)
    priority: Priority = Priority.REALTIME
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    max_chars: int | None = None  # overrides the configured limit (jobs)
    tenant: str = DEFAULT_TENANT  # whose registered voices may be used
    # whose daily character quotas this counts against (None: nobody's, e.g. the CLI)
    principal: Principal | None = None
    # what the result cache may do (Cache-Control, If-None-Match)
    cache: CachePolicy = field(default_factory=CachePolicy)


@dataclass(slots=True)
class Usage:
    """Accounting for one synthesis. Times are seconds since ``prepare()`` began,
    except the engine's own time to first chunk, so the gateway's share of
    time to first audio is ``first_audio_s - queued_s - engine_ttfc_s``."""

    characters: int = 0
    samples: int = 0
    sample_rate: int = 0
    started_at: float = field(default_factory=time.perf_counter)
    queued_s: float = 0.0  # waiting for an admission slot
    admitted_s: float | None = None  # prepare() done: the slot was granted
    priority: Priority = Priority.REALTIME  # the class it was admitted under
    engine_ttfc_s: float | None = None  # engine call to its first chunk
    first_audio_s: float | None = None  # first encoded bytes ready to send
    total_s: float | None = None

    @property
    def audio_seconds(self) -> float:
        return self.samples / self.sample_rate if self.sample_rate else 0.0


def _check_range(value: float, bounds: tuple[float, float], code: str, param: str) -> None:
    if not (np.isfinite(value) and bounds[0] <= value <= bounds[1]):
        raise RequestError(
            f"{param} must be between {bounds[0]:g} and {bounds[1]:g}, got {value:g}",
            code=code,
            hint=f"Use a {param} in [{bounds[0]:g}, {bounds[1]:g}].",
            param=param,
        )


async def _run(pool: Executor | None, fn: Callable[..., bytes], *args: Any) -> bytes:
    """Run a step inline or in the pool. A cancelled request may leave its step
    running in the pool; the encoder's own lock keeps closing it safe."""
    if pool is None:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


class _Watchdog:
    """Cancels the current task if it waits on the engine longer than ``limit``.

    One timer per request that fires at most once per ``limit``, instead of a
    timeout context (and a timer) per chunk: at 64 streams of 50 chunks a
    second that difference is measurable. Only time spent waiting on the engine
    counts; time the consumer spends sending does not.
    """

    __slots__ = ("_handle", "_limit", "_loop", "_since", "_task", "fired")

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._since: float | None = None
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.fired = False

    def __enter__(self) -> None:
        self._since = self._loop.time()
        self._task = asyncio.current_task()
        if self._handle is None:
            self._handle = self._loop.call_at(self._since + self._limit, self._check)

    def __exit__(self, *exc: object) -> None:
        self._since = None
        if self.fired and self._task is not None:
            self._task.uncancel()

    def _check(self) -> None:
        self._handle = None
        if self._since is None:  # not waiting now; look again when it could matter
            self._handle = self._loop.call_at(self._loop.time() + self._limit, self._check)
            return
        waited = self._loop.time() - self._since
        if waited >= self._limit and self._task is not None:
            self.fired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(self._since + self._limit, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Synthesis:
    """A prepared, admitted synthesis. Iterate it once (stream or whole), or
    close it; either way its admission slot is released exactly once."""

    def __init__(
        self,
        *,
        engine: Engine,
        request: EngineRequest,
        voice: ResolvedVoice,
        fmt: AudioFormat,
        sample_rate: int,
        tempo: float,
        gain: float,
        notices: list[Notice],
        lease: Slot | None,  # None: taken later (serving/results.py)
        usage: Usage,
        encode_pool: Executor | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.request = request
        self.voice = voice
        self.format = fmt
        self.sample_rate = sample_rate
        self.media_type = info(fmt).media_type
        self.notices = notices
        self.usage = usage
        self._tempo = tempo
        self._gain = gain
        self._lease = lease
        self._encode_pool = encode_pool
        self._timeout_s = timeout_s
        self._used = False

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def headers(self) -> list[tuple[str, str]]:
        """Response headers that describe the audio (sent before it)."""
        h = [
            ("X-Sample-Rate", str(self.sample_rate)),
            ("X-Channels", "1"),
            ("X-Audio-Format", self.format.value),
            ("X-Voxgate-Engine", self.engine.name),
            # Voice ids may be Chinese (CosyVoice's 中文女); headers are latin-1.
            ("X-Voxgate-Voice", urllib.parse.quote(self.voice.label, safe="-_.~:")),
        ]
        h.extend(("X-Voxgate-Warning", n.header()) for n in self.notices)
        return h

    async def _engine_samples(self) -> AsyncIterator[Samples]:
        """The engine's raw chunks; the slot is released when this ends.

        An engine that produces nothing for ``timeout_s`` (before the first
        chunk or between two) is given up on, whatever engine it is."""
        self._claim()
        called = time.perf_counter()
        watchdog = _Watchdog(self._timeout_s)
        try:
            async with contextlib.aclosing(self.engine.synthesize(self.request)) as chunks:
                source = aiter(chunks)
                while True:
                    try:
                        with watchdog:
                            chunk = await anext(source)
                    except StopAsyncIteration:
                        break
                    except asyncio.CancelledError:
                        if not watchdog.fired:
                            raise
                        raise EngineTimeout(
                            f"engine {self.engine.name!r} produced nothing for "
                            f"{self._timeout_s:g} s",
                            hint="Retry; if it persists the engine is stuck (see /v1/engines).",
                            retry_after=5,
                        ) from None
                    if self.usage.engine_ttfc_s is None:
                        self.usage.engine_ttfc_s = time.perf_counter() - called
                    yield chunk.samples
        finally:
            watchdog.stop()
            self._finish()

    def _post(self) -> PostProcessor:
        return PostProcessor(
            self.engine.capabilities.sample_rate,
            self.sample_rate,
            tempo=self._tempo,
            gain=self._gain,
        )

    async def pcm(self) -> AsyncIterator[Samples]:
        """Post-processed float32 samples at the output rate."""
        post = self._post()
        async for raw in self._engine_samples():
            x = post.process(raw)
            if x.size:
                self.usage.samples += x.size
                self._mark_first_audio()
                yield x
        rest = post.flush()
        if rest.size:
            self.usage.samples += rest.size
            yield rest

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """Encoded bytes as they are produced; the concatenation is a valid file."""
        encoder = make_encoder(self.format, self.sample_rate, whole=False)
        async for data in self._encode(encoder):
            yield data

    async def read_all(self) -> bytes:
        """The whole file, with exact lengths in its headers."""
        encoder = make_encoder(self.format, self.sample_rate, whole=True)
        return b"".join([data async for data in self._encode(encoder)])

    async def _encode(self, encoder: Encoder) -> AsyncIterator[bytes]:
        post = self._post()
        # Compressing codecs cost milliseconds per chunk: off the event loop with
        # them, so one request's encoding never delays another's first audio.
        pool = self._encode_pool if encoder.cpu_bound else None

        def step(raw: Samples) -> bytes:
            return encoder.encode(post.process(raw))

        def last() -> bytes:
            return encoder.encode(post.flush()) + encoder.finish()

        finished = False
        try:
            async for raw in self._engine_samples():
                data = await _run(pool, step, raw)
                self.usage.samples = encoder.samples_in
                if data:
                    self._mark_first_audio()
                    yield data
            tail = await _run(pool, last)
            finished = True
            self.usage.samples = encoder.samples_in
            if tail:
                self._mark_first_audio()
                yield tail
        finally:
            if not finished:
                # In the pool: close() waits for a step that may still be
                # running there, and the event loop must not wait with it.
                try:
                    if pool is None:
                        raise RuntimeError("no pool")
                    pool.submit(encoder.close)
                except RuntimeError:  # no pool, or it is shut down: we are exiting
                    encoder.close()

    async def not_modified(self) -> list[tuple[str, str]] | None:
        """Headers for a 304 when the client already holds this whole response
        (If-None-Match); None to send it. Only a cached synthesis can tell."""
        return None

    async def aclose(self) -> None:
        """Give up without synthesizing (or after a failure): free the slot."""
        self._finish()

    def _claim(self) -> None:
        if self._used:
            raise RuntimeError("a Synthesis can be consumed only once")
        self._used = True

    def _mark_first_audio(self) -> None:
        if self.usage.first_audio_s is None:
            self.usage.first_audio_s = time.perf_counter() - self.usage.started_at

    def _finish(self) -> None:
        if self.usage.total_s is None:
            self.usage.total_s = time.perf_counter() - self.usage.started_at
        if self._lease is not None:
            self._lease.release()


@dataclass(frozen=True, slots=True)
class _Validated:
    plan: VoicePlan
    fmt: AudioFormat
    sample_rate: int


class Pipeline:
    def __init__(
        self,
        registry: EngineRegistry,
        settings: Settings,
        library: VoiceLibrary | None = None,
        redis: RedisConnection | None = None,
    ) -> None:
        self.registry = registry
        self.redis = redis
        self.settings = settings
        self.voices = VoiceDirectory(settings.voice_aliases, settings.default_voice)
        self.library = library
        self.quota: CharacterQuota | None = None  # set by create_app
        self.results: Results | None = None  # the result cache, set by create_app
        self._generic_models = frozenset(settings.openai_models)
        self._encode_pool = ThreadPoolExecutor(
            max_workers=settings.encode_threads or os.cpu_count() or 2,
            thread_name_prefix="voxgate-encode",
        )
        self.admission: dict[str, AdmissionControl] = {}
        self._timeouts: dict[str, float] = {}
        for engine in registry:
            self._serve(engine, settings.engines.get(engine.name))

    def _serve(self, engine: Engine, cfg: EngineConfig | None) -> None:
        """An engine's admission and timeout (at start, or registered at run time)."""
        settings = self.settings
        self._timeouts[engine.name] = (
            cfg.timeout_s if cfg and cfg.timeout_s is not None else settings.engine_timeout_s
        )
        queue = cfg.queue_size if cfg and cfg.queue_size is not None else None
        wait = cfg.queue_timeout_s if cfg and cfg.queue_timeout_s is not None else None
        capacity = engine.capabilities.max_concurrency
        max_queue = settings.queue_size if queue is None else queue
        max_wait = settings.queue_timeout_s if wait is None else wait
        batch_wait, reserved = settings.queue_timeout_batch_s, settings.reserved_realtime_slots
        shared = cfg.shared_admission if cfg and cfg.shared_admission is not None else None
        if shared is None:
            shared = settings.shared_admission
        admission: Admission | SharedAdmission
        if shared and self.redis is not None:
            admission = SharedAdmission(
                engine.name,
                capacity,
                max_queue,
                max_wait,
                redis=self.redis,
                max_wait_batch_s=batch_wait,
                reserved_realtime=reserved,
            )
        else:
            admission = Admission(
                engine.name,
                capacity,
                max_queue,
                max_wait,
                max_wait_batch_s=batch_wait,
                reserved_realtime=reserved,
            )
        self.admission[engine.name] = admission
        engine.watch_capacity(admission.resize)  # engines over workers that come and go

    def add_engine(self, engine: Engine, cfg: EngineConfig | None = None) -> None:
        """Serve a started engine registered at run time. Its admission exists
        before the registry names it, so no request can find it without one."""
        self._serve(engine, cfg)
        self.registry.add(engine)

    async def remove_engine(self, name: str) -> Engine:
        """Stop serving an engine and close its admission (the caller closes
        the engine). Call it once the engine is idle."""
        engine = self.registry.remove(name)
        admission = self.admission.pop(name, None)
        self._timeouts.pop(name, None)
        if admission is not None:
            await admission.close()
        return engine

    def close(self) -> None:
        self._encode_pool.shutdown(wait=False, cancel_futures=True)

    async def _validate(self, req: SynthesisRequest) -> _Validated:
        """Everything about a request that does not depend on its text: the
        engine and mode its voice means, capabilities, ranges, output. Shared
        by :meth:`check` and :meth:`prepare` so they cannot drift apart."""
        plan = await plan_voice(
            voice=req.voice,
            engine=req.engine,
            mode=req.mode,
            instruct=req.instruct,
            prompt=req.prompt,
            tenant=req.tenant,
            registry=self.registry,
            library=self.library,
            generic_models=self._generic_models,
        )
        engine = plan.engine
        if not engine.ready:
            raise EngineUnavailable(
                f"engine {engine.name!r} is not ready",
                hint="GET /readyz shows engine state; retry shortly.",
                retry_after=5,
            )
        self._check_mode(engine, plan.mode, req, plan.prompt)
        _check_range(req.speed, SPEED_RANGE, errors.SPEED_OUT_OF_RANGE, "speed")
        _check_range(req.pitch, PITCH_RANGE, errors.PITCH_OUT_OF_RANGE, "pitch")
        _check_range(req.volume, VOLUME_RANGE, errors.VOLUME_OUT_OF_RANGE, "volume")
        fmt, sample_rate = self._output(engine, req)
        return _Validated(plan, fmt, sample_rate)

    def _voice(self, plan: VoicePlan) -> ResolvedVoice:
        return self.voices.resolve(
            plan.engine,
            plan.speaker,
            optional=plan.mode in plan.engine.capabilities.prompt_modes and plan.speaker is None,
            registered=plan.registered.id if plan.registered else None,
        )

    async def check(self, req: SynthesisRequest) -> tuple[Engine, int, ResolvedVoice]:
        """What :meth:`prepare` checks that does not depend on the text, with no
        quota, admission or engine work: a streamed session (serving/session.py)
        refuses a bad configuration this way before its text arrives. Returns
        the engine, the output sample rate and the voice."""
        valid = await self._validate(req)
        voice = self._voice(valid.plan)
        await self.registry.ensure_available(valid.plan.engine)
        return valid.plan.engine, valid.sample_rate, voice

    async def prepare(
        self, req: SynthesisRequest, *, text_stream: AsyncIterator[str] | None = None
    ) -> Synthesis:
        """``text_stream``: more text, still arriving, spoken after ``req.text``
        in the same engine call (engines with ``text_streaming`` only; the
        caller counts its characters)."""
        usage = Usage()
        valid = await self._validate(req)
        plan, fmt, sample_rate = valid.plan, valid.fmt, valid.sample_rate
        engine, mode = plan.engine, plan.mode
        caps = engine.capabilities
        if text_stream is not None and not caps.text_streaming:
            raise ValueError(f"engine {engine.name!r} cannot take text while it arrives")

        text = normalize(req.text)
        limit = req.max_chars or self.settings.max_input_chars
        if len(text) > limit:
            raise RequestError(
                f"text is {len(text)} characters; the limit is {limit}",
                code=errors.TEXT_TOO_LONG,
                hint="Split the text into several requests (or raise VOXGATE_MAX_INPUT_CHARS).",
                param="text",
            )
        nodes, lowered = lower(parse(text), caps.markup)
        notices = [Notice("markup_lowered", _LOWERED_NOTICE[f]) for f in sorted(lowered)]
        if not has_content(nodes):
            raise RequestError(
                "text is empty",
                code=errors.TEXT_EMPTY,
                hint="Send at least one word to speak.",
                param="text",
            )
        segments = split(
            nodes,
            max_chars=caps.max_segment_chars,
            first_max_chars=min(self.settings.first_segment_chars, caps.max_segment_chars),
        )
        if not segments:
            raise RequestError("text is empty", code=errors.TEXT_EMPTY, param="text")
        usage.characters = len(text)
        usage.sample_rate = sample_rate

        voice = self._voice(plan)
        native_speed, tempo = self._split_speed(engine, req.speed)
        if req.pitch and not caps.pitch:
            notices.append(Notice("pitch_unsupported", f"engine {engine.name} cannot shift pitch"))
        prompt = plan.prompt
        if prompt is not None and mode not in caps.prompt_modes:
            notices.append(
                Notice(
                    "prompt_ignored",
                    f"mode {mode.value} of engine {engine.name} speaks with a built-in voice",
                )
            )
            prompt = None
        ereq = EngineRequest(
            request_id=req.request_id,
            mode=mode,
            segments=tuple(segments),
            speaker=voice.speaker,
            instruct=req.instruct,
            prompt=prompt,
            language=req.language,
            speed=native_speed,
            pitch=req.pitch if caps.pitch else 0.0,
            volume=req.volume if caps.volume else 1.0,
            seed=req.seed,
            text_stream=text_stream,
        )
        notices.extend(engine.check(ereq))
        # Daily character quotas: a clean 429 before any audio; refunded if not admitted.
        charge = None
        if self.quota is not None and req.principal is not None:
            charge = await self.quota.reserve(req.principal, usage.characters)
        admission = self.admission[engine.name]
        make: Callable[..., Synthesis] = Synthesis
        lease: Slot | None = None
        if self.results is not None and self.results.defers(req):
            # A cache hit, or a request identical to one in flight, takes no
            # slot: the synthesis that runs takes it (serving/results.py).
            refund = charge.refund if charge is not None else None
            available = functools.partial(self.registry.ensure_available, engine)
            make = self.results.deferred(admission, req, plan.registered, refund, available)
        else:
            try:
                await self.registry.ensure_available(engine)  # draining, circuit_open: 503 now
                lease = await admission.acquire(req.priority, req.tenant)
            except BaseException:
                if charge is not None:
                    await charge.refund()
                raise
            usage.queued_s = lease.waited_s
            usage.admitted_s = time.perf_counter() - usage.started_at
        usage.priority = req.priority
        if plan.registered is not None and self.library is not None:
            self.library.record_use(plan.registered)
        return make(
            engine=engine,
            request=ereq,
            voice=voice,
            fmt=fmt,
            sample_rate=sample_rate,
            tempo=tempo,
            gain=1.0 if caps.volume else req.volume,
            notices=notices,
            lease=lease,
            usage=usage,
            encode_pool=self._encode_pool,
            timeout_s=self._timeouts[engine.name],
        )

    def _check_mode(
        self, engine: Engine, mode: Mode, req: SynthesisRequest, prompt: PromptAudio | None
    ) -> None:
        modes = engine.capabilities.modes
        if mode not in modes:
            raise RequestError(
                f"engine {engine.name!r} does not support mode {mode.value!r}",
                code=errors.MODE_UNSUPPORTED,
                hint=f"Engine {engine.name!r} supports: {', '.join(sorted(modes))}.",
                param="mode",
            )
        if mode is Mode.INSTRUCT and not (req.instruct and req.instruct.strip()):
            raise RequestError(
                "mode instruct needs an instruction",
                code=errors.INSTRUCT_REQUIRED,
                hint='Add "instruct", e.g. "speak slowly" or "用悲伤的语气".',
                param="instruct",
            )
        if mode in engine.capabilities.prompt_modes and prompt is None:
            raise RequestError(
                f"mode {mode.value!r} of engine {engine.name!r} needs a voice prompt",
                code=errors.PROMPT_REQUIRED,
                hint="Use a registered voice (voice: voice_...) or send reference_audio: "
                "3-15 seconds of the voice to imitate.",
                param="voice",
            )

    def _output(self, engine: Engine, req: SynthesisRequest) -> tuple[AudioFormat, int]:
        fmt = req.format
        if req.sample_rate is None:
            return fmt, nearest_rate(fmt, engine.capabilities.sample_rate)
        if not rate_allowed(fmt, req.sample_rate):
            rates = info(fmt).rates
            allowed = ", ".join(map(str, rates)) if rates else "8000-192000"
            raise RequestError(
                f"{fmt.value} cannot carry {req.sample_rate} Hz",
                code=errors.SAMPLE_RATE_UNSUPPORTED,
                hint=f"Allowed for {fmt.value}: {allowed}.",
                param="sample_rate",
            )
        return fmt, req.sample_rate

    @staticmethod
    def _split_speed(engine: Engine, speed: float) -> tuple[float, float]:
        """Speed the engine applies itself, and the tempo factor left to us."""
        rng = engine.capabilities.speed_range
        if rng is None:
            return 1.0, speed
        native = min(max(speed, rng[0]), rng[1])
        tempo = speed / native
        return native, (1.0 if abs(tempo - 1.0) < 1e-6 else tempo)
