"""The result cache and single flight, as the pipeline sees them.

:meth:`Pipeline.prepare` validates a request completely, then (when the cache
is on and the request does not say ``no-store``) hands back a
:class:`CachedSynthesis` instead of a plain :class:`Synthesis`, **without an
admission slot**. Only when a surface asks for audio is it known whether the
response is streamed or whole (their bytes differ, so they are different
entries), and only then does the request become one of:

* a **hit**: the stored bytes, at once, unpaced, with no slot and no engine;
* **shared**: it joins an identical synthesis already running (here, or on
  another gateway through Redis) and receives the same chunks live;
* a **miss**: it starts a flight (:mod:`voxgate.serving.flight`) whose
  producer takes the admission slot, synthesizes once for every reader and
  stores the complete result.

Admission refusals and engine failures still reach the client before its
first byte, so they are answered with a status as before (503 and 429
included); a refused request's quota charge is refunded as
:meth:`Pipeline.prepare` does.

The key covers everything that shapes the bytes: tenant (a timing probe must
not reveal another tenant's texts), engine, mode, the text as segmented
after normalization, speaker or voice (a registered voice by id, last change
and sample digest; an inline prompt by a digest of its samples), instruction,
language, speed/pitch/volume as planned, seed, format, sample rate and the
response shape. A result from a failover engine is not stored: it is not
what the request's engine makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from voxgate import __version__
from voxgate.audio.pcm import Samples
from voxgate.audio.prompt import PromptAudio
from voxgate.config import Settings
from voxgate.errors import VoxgateError
from voxgate.pipeline import Synthesis, SynthesisRequest
from voxgate.serving.admission import AdmissionControl, Priority, Slot
from voxgate.serving.cache import (
    CachePolicy,
    Entry,
    LocalResultCache,
    RedisResultCache,
    ResultCache,
    result_key,
)
from voxgate.serving.flight import (
    Abandoned,
    Flight,
    FlightResult,
    Flights,
    Headers,
    Mirror,
    RedisFlights,
    call_soon_checked,
)
from voxgate.serving.redis import RedisConnection

if TYPE_CHECKING:
    from voxgate.voices.model import Voice

log = logging.getLogger("voxgate.cache")

HIT, MISS, SHARED = "hit", "miss", "shared"


@dataclass(frozen=True, slots=True)
class _Route:
    """What a deferred synthesis needs from ``prepare`` to be served later."""

    results: Results
    admission: AdmissionControl
    priority: Priority
    tenant: str
    policy: CachePolicy
    registered: Voice | None
    refund: Callable[[], Awaitable[None]] | None
    # raises 503 (draining, every breaker open) for a synthesis about to run;
    # a hit or a joined flight does not ask, so cached answers outlive outages
    available: Callable[[], Awaitable[None]] | None = None


class Results:
    """The cache, this process's flights, and (with Redis) cross-gateway flights.
    ``app.state.cache``; :meth:`stats` feeds metrics."""

    def __init__(self, cache: ResultCache, *, shared: RedisFlights | None = None) -> None:
        self.cache = cache
        self.shared = shared
        self.flights = Flights()
        self.counts = {HIT: 0, MISS: 0, SHARED: 0, "bypassed": 0, "not_modified": 0, "failed": 0}

    async def start(self) -> None:
        await self.cache.start()

    async def close(self) -> None:
        await self.flights.close()
        await self.cache.close()

    def stats(self) -> dict[str, int]:
        """hits, misses, shared (readers of a synthesis another request
        started), bypassed, not_modified, failed, in_flight, and the store's
        entries, bytes, evictions, expired, stored, purged."""
        return {
            "hits": self.counts[HIT],
            "misses": self.counts[MISS],
            "shared": self.counts[SHARED],
            "bypassed": self.counts["bypassed"],
            "not_modified": self.counts["not_modified"],
            "failed": self.counts["failed"],
            "in_flight": len(self.flights),
            **self.cache.stats(),
        }

    async def purge_voice(self, voice_id: str, *, deleted: bool = False) -> int:
        """Drop every stored result made with a voice (the voice library calls
        this when a voice is deleted or changed)."""
        return await self.cache.purge_voice(voice_id, deleted=deleted)

    # -- the pipeline's hook ---------------------------------------------------------

    def defers(self, req: SynthesisRequest) -> bool:
        """Whether ``req`` goes through the cache (and so takes its slot late)."""
        if req.cache.bypass:
            self.counts["bypassed"] += 1
            return False
        return True

    def deferred(
        self,
        admission: AdmissionControl,
        req: SynthesisRequest,
        registered: Voice | None,
        refund: Callable[[], Awaitable[None]] | None = None,
        available: Callable[[], Awaitable[None]] | None = None,
    ) -> Callable[..., Synthesis]:
        """A constructor taking :class:`Synthesis`'s arguments (``lease=None``)."""
        route = _Route(
            self, admission, req.priority, req.tenant, req.cache, registered, refund, available
        )
        return functools.partial(CachedSynthesis, route=route)

    # -- producing ---------------------------------------------------------------------

    def lead(self, reader: CachedSynthesis, key: str, whole: bool) -> Flight:
        flight = Flight(key, limit=self.cache.max_entry_bytes)
        job = _Job(self, reader, key, whole)
        # A no-cache request synthesizes afresh even if an identical one runs;
        # it is findable only when nothing else is.
        register = self.flights.get(key) is None
        self.flights.start(flight, job.run(flight), register=register)
        return flight


class _Job:
    """The producer of one flight."""

    def __init__(self, results: Results, reader: CachedSynthesis, key: str, whole: bool) -> None:
        self.results = results
        self.route = reader.route
        self.kwargs = reader.kwargs
        self.key = key
        self.whole = whole
        self.engine_name = reader.engine.name
        self.media_type = reader.media_type
        self.characters = reader.usage.characters

    async def run(self, flight: Flight) -> None:
        shared = self.results.shared
        if shared is not None and self.route.policy.read:
            try:
                if await self._across(shared, flight):
                    return
            except RedisError:
                if flight.size:
                    raise
                log.warning("single flight: Redis failed; synthesizing here", exc_info=True)
                flight.origin = "engine"
        await self.synthesize(flight, None)

    async def _across(self, shared: RedisFlights, flight: Flight) -> bool:
        """Lead or follow the flight for this key across gateways; False when
        this gateway should just synthesize by itself."""
        for _ in range(3):
            leader, fid = await shared.claim(self.key)
            if leader:
                mirror = shared.mirror(self.key, fid)
                try:
                    # Another gateway may have stored it between our lookup and the lock.
                    entry = await self.results.cache.get(self.key)
                    if entry is not None:
                        flight.origin = "cache"
                        flight.headers = entry.headers
                        flight.append(entry.data)
                        flight.finish(
                            FlightResult(entry.samples, entry.sample_rate, cacheable=True)
                        )
                        return True
                    flight.on_idle = functools.partial(self._idle, mirror)
                    await self.synthesize(flight, mirror)
                finally:
                    await mirror.close()
                return True
            flight.origin = "remote"
            if await shared.follow(fid, flight):
                return True
            flight.origin = "engine"
        return False

    def _idle(self, mirror: Mirror, flight: Flight) -> None:
        """The last local reader left: go on only if other gateways follow."""
        self.results.flights.forget(flight)

        async def check() -> None:
            if await mirror.followers() == 0 and flight.task is not None:
                flight.task.cancel()

        call_soon_checked(check)

    async def synthesize(self, flight: Flight, mirror: Mirror | None) -> None:
        route = self.route
        try:
            if route.available is not None:
                await route.available()
            lease = await route.admission.acquire(route.priority, route.tenant)
        except VoxgateError as exc:
            flight.fail(exc, refused=True)
            if mirror is not None:
                await mirror.fail(exc, refused=True)
            return
        flight.admitted_at = time.perf_counter()
        usage = dataclasses.replace(
            self.kwargs["usage"],
            started_at=time.perf_counter(),
            queued_s=lease.waited_s,
            samples=0,
            engine_ttfc_s=None,
            first_audio_s=None,
            total_s=None,
        )
        synthesis = Synthesis(**{**self.kwargs, "lease": lease, "usage": usage})
        try:
            await self._produce(synthesis, flight, mirror)
        except asyncio.CancelledError:
            if mirror is not None:
                await mirror.fail(Abandoned("every client went away"))
            raise
        except Exception as exc:
            flight.fail(exc)
            if mirror is not None:
                await mirror.fail(exc)
            return
        finally:
            await synthesis.aclose()
        headers = flight.headers or tuple(synthesis.headers())
        engine = dict(headers).get("X-Voxgate-Engine")
        result = FlightResult(
            samples=usage.samples,
            sample_rate=usage.sample_rate,
            queued_s=usage.queued_s,
            engine_ttfc_s=usage.engine_ttfc_s,
            cacheable=not flight.trimmed
            and flight.size <= self.results.cache.max_entry_bytes
            and engine == self.engine_name,
        )
        # Stored before the readers hear the end: a client that repeats its
        # request as soon as it has the answer gets a hit (read your writes).
        if result.cacheable and route.policy.write:
            entry = Entry(
                data=flight.data(),
                media_type=self.media_type,
                headers=headers,
                characters=self.characters,
                samples=usage.samples,
                sample_rate=usage.sample_rate,
                voice=route.registered.id if route.registered is not None else None,
            )
            await self.results.cache.put(self.key, entry)
        flight.finish(result)
        if mirror is not None:
            await mirror.finish(result, headers)

    async def _produce(self, synthesis: Synthesis, flight: Flight, mirror: Mirror | None) -> None:
        if self.whole:
            data = await synthesis.read_all()
            flight.headers = tuple(synthesis.headers())
            flight.append(data)
            if mirror is not None:
                await mirror.chunk(data, flight.headers)
            return
        async with contextlib.aclosing(synthesis.stream()) as chunks:
            async for data in chunks:
                if flight.headers is None:
                    flight.headers = tuple(synthesis.headers())
                flight.append(data)
                if mirror is not None:
                    await mirror.chunk(data, flight.headers)
                await flight.room()
        if flight.headers is None:
            flight.headers = tuple(synthesis.headers())


class CachedSynthesis(Synthesis):
    """A prepared synthesis whose audio may come from the cache or from an
    identical synthesis in flight. It holds no admission slot of its own
    unless it runs by itself (``pcm()``, or a request that cannot be keyed)."""

    def __init__(self, *, route: _Route, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.route = route
        self.kwargs = kwargs  # to build the synthesis a flight runs
        self.cache_status: str | None = None  # hit | miss | shared; None: not via the cache
        self.cache_key: str | None = None
        self._whole = False
        self._audio_headers: Headers | None = None
        self._max_age: int | None = None  # how long the client may keep it; None: no-store
        self._refunded = False
        self._keys: dict[bool, str | None] = {}  # by shape: If-None-Match asks first

    # -- what surfaces call ------------------------------------------------------------

    async def stream(self) -> AsyncGenerator[bytes, None]:
        # Nested generators are closed explicitly, so that a client leaving
        # ends its subscription now, not when the garbage collector gets to it.
        async with contextlib.aclosing(self._serve(whole=False)) as chunks:
            async for data in chunks:
                yield data

    async def read_all(self) -> bytes:
        return b"".join([data async for data in self._serve(whole=True)])

    async def pcm(self) -> AsyncIterator[Samples]:
        """Samples are not cached: this runs by itself, with its own slot."""
        await self._admit()
        async for samples in super().pcm():
            yield samples

    def headers(self) -> list[tuple[str, str]]:
        if self.cache_status is None:
            return super().headers()
        found = list(self._audio_headers) if self._audio_headers else super().headers()
        found.append(("X-Voxgate-Cache", self.cache_status))
        if self.cache_key is not None and (self._whole or self.cache_status == HIT):
            found.append(("ETag", f'"{self.cache_key}"'))
        if self._whole:
            control = "no-store" if self._max_age is None else f"private, max-age={self._max_age}"
            found.append(("Cache-Control", control))
        return found

    async def not_modified(self) -> list[tuple[str, str]] | None:
        policy = self.route.policy
        if not policy.if_none_match:
            return None
        key = await self._key(whole=True)
        if key is None or not policy.holds(key):
            return None
        self.route.results.counts["not_modified"] += 1
        ttl = round(self.route.results.cache.ttl_s)
        return [
            ("ETag", f'"{key}"'),
            ("Cache-Control", f"private, max-age={ttl}"),
            ("X-Voxgate-Cache", HIT),
        ]

    # -- serving ---------------------------------------------------------------------------

    async def _serve(self, whole: bool) -> AsyncGenerator[bytes, None]:
        self._whole = whole
        key = await self._key(whole)
        if key is None:  # cannot be keyed: an ordinary synthesis
            await self._admit()
            if whole:
                yield await super().read_all()
            else:
                async with contextlib.aclosing(super().stream()) as chunks:
                    async for data in chunks:
                        yield data
            return
        self._claim()
        self.cache_key = key
        try:
            async with contextlib.aclosing(self._find(key, whole)) as chunks:
                async for data in chunks:
                    yield data
        finally:
            self._finish()

    async def _find(self, key: str, whole: bool) -> AsyncGenerator[bytes, None]:
        results = self.route.results
        reading = self.route.policy.read
        flight = results.flights.get(key) if reading else None
        if flight is None and reading:
            entry = await results.cache.get(key)
            if entry is not None:
                yield self._hit(entry)
                return
            flight = results.flights.get(key)  # started while we looked
        joined = flight is not None
        if flight is None:
            flight = results.lead(self, key, whole)
        async with contextlib.aclosing(self._read(flight, joined)) as chunks:
            async for data in chunks:
                yield data

    def _hit(self, entry: Entry) -> bytes:
        results = self.route.results
        self._settle(HIT)
        self._audio_headers = entry.headers
        self._max_age = max(0, round(results.cache.ttl_s - entry.age()))
        self.usage.samples = entry.samples
        self._mark_first_audio()
        return entry.data

    async def _read(self, flight: Flight, joined: bool) -> AsyncGenerator[bytes, None]:
        subscription = flight.subscribe()
        try:
            async for data in subscription:
                if self.cache_status is None:
                    self._settle_from(flight, joined)
                    self._mark_first_audio()
                yield data
        except VoxgateError:
            self.route.results.counts["failed"] += 1
            if flight.refused:
                await self._refund()
            raise
        finally:
            subscription.close()
        if self.cache_status is None:
            self._settle_from(flight, joined)
        result = flight.result
        assert result is not None
        self._audio_headers = flight.headers
        self._max_age = round(self.route.results.cache.ttl_s) if result.cacheable else None
        self.usage.samples = result.samples
        self.usage.engine_ttfc_s = result.engine_ttfc_s
        if self.cache_status == MISS:  # its own synthesis: its slot, its wait
            self.usage.queued_s = result.queued_s
            if flight.admitted_at is not None:
                self.usage.admitted_s = max(0.0, flight.admitted_at - self.usage.started_at)

    def _settle_from(self, flight: Flight, joined: bool) -> None:
        if flight.origin == "cache":
            self._settle(HIT)
        elif joined or flight.origin == "remote":
            self._settle(SHARED)
        else:
            self._settle(MISS)

    def _settle(self, status: str) -> None:
        self.cache_status = status
        self.route.results.counts[status] += 1
        if status != MISS and self.usage.admitted_s is None:  # served without a slot
            self.usage.admitted_s = time.perf_counter() - self.usage.started_at

    async def _admit(self) -> None:
        """Take a slot now, for a synthesis that runs by itself."""
        route = self.route
        try:
            if route.available is not None:
                await route.available()
            lease: Slot = await route.admission.acquire(route.priority, route.tenant)
        except VoxgateError:
            await self._refund()
            raise
        self._lease = lease
        self.usage.queued_s = lease.waited_s
        self.usage.admitted_s = time.perf_counter() - self.usage.started_at

    async def _refund(self) -> None:
        if self.route.refund is not None and not self._refunded:
            self._refunded = True
            await self.route.refund()

    async def _key(self, whole: bool) -> str | None:
        if whole not in self._keys:
            self._keys[whole] = await self._compute_key(whole)
        return self._keys[whole]

    async def _compute_key(self, whole: bool) -> str | None:
        request = self.request
        if request.text_stream is not None:
            return None
        registered = self.route.registered
        prompt: dict[str, Any] | None = None
        if request.prompt is not None:
            own = registered is not None and request.prompt.voice_id == registered.id
            prompt = {
                "text": request.prompt.text,
                "rate": request.prompt.sample_rate,
                "samples": None if own else await asyncio.to_thread(_digest, request.prompt),
            }
        material = {
            "voxgate": __version__,
            "tenant": self.route.tenant,
            "engine": [self.engine.kind, self.engine.name],
            "mode": request.mode.value,
            "segments": [[s.text, s.script] for s in request.segments],
            "speaker": request.speaker.id if request.speaker else None,
            "voice": None
            if registered is None
            else [registered.id, registered.updated_at.isoformat(), registered.sample_digest],
            "prompt": prompt,
            "instruct": request.instruct,
            "language": request.language,
            "speed": request.speed,
            "pitch": request.pitch,
            "volume": request.volume,
            "seed": request.seed,
            "options": sorted((str(k), repr(v)) for k, v in request.options.items()),
            "tempo": self._tempo,
            "gain": self._gain,
            "format": self.format.value,
            "sample_rate": self.sample_rate,
            "shape": "whole" if whole else "stream",
        }
        return result_key(material)


def _digest(prompt: PromptAudio) -> str:
    return hashlib.blake2b(prompt.samples.tobytes(), digest_size=16).hexdigest()


def build_results(settings: Settings, redis: RedisConnection | None) -> Results | None:
    """The configured cache (None when ``VOXGATE_CACHE_ENABLED`` is false)."""
    if not settings.cache_enabled:
        return None
    max_bytes, ttl_s = settings.cache_max_bytes, settings.cache_ttl_s
    max_entry = settings.cache_max_entry_bytes
    if redis is None:
        local = LocalResultCache(
            settings.data_dir / "cache", max_bytes=max_bytes, ttl_s=ttl_s, max_entry_bytes=max_entry
        )
        return Results(local)
    shared = RedisResultCache(redis, max_bytes=max_bytes, ttl_s=ttl_s, max_entry_bytes=max_entry)
    return Results(shared, shared=RedisFlights(redis))
