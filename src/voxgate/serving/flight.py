"""Single flight: identical requests in flight share one synthesis.

The first request for a key starts a :class:`Flight`: a producer task (owned
by the flight, not by any request) synthesizes and appends the encoded
chunks; every request with the same key, the first included, reads them
through its own :class:`Subscription`, live, from the first chunk on.

Decisions, and why:

* **The synthesis belongs to the flight, not to the first client.** When the
  client that started it goes away, the others keep receiving audio; the
  engine work is cancelled only when the *last* reader leaves (DESIGN rule 3:
  a disconnect cancels work nobody wants any more).
* **Failure is shared, not retried.** If the synthesis fails, every reader
  fails with the same error (each gets its own copy). Retrying N identical
  requests on an engine that just failed would multiply the load on it by N,
  the opposite of what single flight is for; the error's ``Retry-After``
  tells clients when to come back. A refusal by admission (503) is flagged
  (``refused``) so callers can refund what they charged.
* **Bounded memory, no slow reader stalls the others.** Readers share one
  list of chunks, each with its own position: the producer never waits for a
  reader while the output fits in the cache's entry bound (``limit``), which
  is also what the list may hold. Output beyond that cannot be cached: the
  flight then stops taking new readers, drops chunks every reader has had,
  and from there on is paced by its slowest reader, exactly as an ordinary
  stream is paced by its one client.

Across gateways (:class:`RedisFlights`): the gateway that wins a Redis lock
for the key synthesizes and also appends its chunks to a Redis Stream; the
others' flights read that stream (``XREAD BLOCK``) instead of running an
engine, and their own readers attach to those flights as usual. A follower
that sees the lock vanish with no end marker (the leading gateway died) or
a "cancelled" marker before any audio, tries again (it may become leader).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any, cast

from redis.exceptions import RedisError

from voxgate import errors
from voxgate.errors import EngineUnavailable, VoxgateError
from voxgate.serving.redis import RedisConnection

log = logging.getLogger("voxgate.cache")

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class FlightResult:
    """How a finished flight went, for its readers' usage and headers."""

    samples: int
    sample_rate: int
    queued_s: float = 0.0
    engine_ttfc_s: float | None = None
    cacheable: bool = False  # complete, within the entry bound, from the planned engine


class Abandoned(EngineUnavailable):
    """Every reader left before the synthesis finished."""


class Flight:
    def __init__(self, key: str, *, limit: int) -> None:
        self.key = key
        self.limit = limit
        # engine: synthesized here; remote: another gateway's synthesis; cache:
        # found stored when about to synthesize (another gateway just finished)
        self.origin = "engine"
        self.headers: Headers | None = None  # set before the first chunk
        self.result: FlightResult | None = None
        self.error: BaseException | None = None
        self.refused = False  # the error is admission's: the request was never admitted
        self.admitted_at: float | None = None  # perf_counter() when its slot was granted here
        self.size = 0
        self.trimmed = False
        self.abandoned = False
        self.task: asyncio.Task[None] | None = None
        self.on_idle: Callable[[Flight], None] | None = None  # the last reader left early
        self.on_trim: Callable[[Flight], None] | None = None
        self._chunks: list[bytes] = []
        self._base = 0  # position of _chunks[0] in the whole output
        self._held = 0
        self._readers: dict[int, int] = {}  # reader -> position of its next chunk
        self._ids = itertools.count()
        self._changed = asyncio.Event()
        self._progress = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self.result is not None or self.error is not None

    @property
    def joinable(self) -> bool:
        return not (self.trimmed or self.abandoned or self.error is not None)

    @property
    def readers(self) -> int:
        return len(self._readers)

    def data(self) -> bytes:
        """The whole output (only while nothing has been dropped)."""
        if self.trimmed:
            raise RuntimeError("the flight outgrew its limit; its start is gone")
        return b"".join(self._chunks)

    # -- producer side ---------------------------------------------------------------

    def append(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._held += len(data)
        self.size += len(data)
        if self.size > self.limit and not self.trimmed:
            self.trimmed = True
            if self.on_trim is not None:
                self.on_trim(self)
        self._drop_consumed()
        self._wake()

    async def room(self) -> None:
        """Wait, once the flight outgrew its limit, until readers catch up."""
        while self.trimmed and self._readers and self._held > self.limit:
            event = self._progress
            await event.wait()

    def finish(self, result: FlightResult) -> None:
        self.result = result
        self._wake()

    def fail(self, exc: BaseException, *, refused: bool = False) -> None:
        if self.ended:
            return
        self.error = exc
        self.refused = refused
        self._wake()

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    # -- reader side -------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """A reader from the first chunk (call ``close`` when done)."""
        if self.trimmed:
            raise RuntimeError("a trimmed flight takes no new readers")
        rid = next(self._ids)
        self._readers[rid] = 0
        return Subscription(self, rid)

    def _advance(self, rid: int, position: int) -> None:
        self._readers[rid] = position
        if self.trimmed:
            self._drop_consumed()

    def _leave(self, rid: int) -> None:
        if self._readers.pop(rid, None) is None:
            return
        self._drop_consumed()
        if not self._readers and not self.ended and not self.abandoned:
            self.abandoned = True
            if self.on_idle is not None:
                self.on_idle(self)

    def _drop_consumed(self) -> None:
        if not self.trimmed:
            return
        low = min(self._readers.values(), default=self._base + len(self._chunks))
        drop = low - self._base
        if drop > 0:
            self._held -= sum(len(c) for c in self._chunks[:drop])
            del self._chunks[:drop]
            self._base = low
        event, self._progress = self._progress, asyncio.Event()
        event.set()


class Subscription:
    """One reader's position in a flight; iterate it for the chunks."""

    __slots__ = ("_closed", "_flight", "_position", "_rid")

    def __init__(self, flight: Flight, rid: int) -> None:
        self._flight = flight
        self._rid = rid
        self._position = 0
        self._closed = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> bytes:
        flight = self._flight
        while not self._closed:
            index = self._position - flight._base
            if index < len(flight._chunks):
                chunk = flight._chunks[index]
                self._position += 1
                flight._advance(self._rid, self._position)
                return chunk
            if flight.error is not None:
                raise _copy(flight.error)
            if flight.result is not None:
                break
            event = flight._changed
            await event.wait()
        raise StopAsyncIteration

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._flight._leave(self._rid)


def _copy(exc: BaseException) -> BaseException:
    """Each reader raises its own exception object (tracebacks are per raise)."""
    try:
        return copy.copy(exc)
    except Exception:
        return exc


class Flights:
    """The flights of this process, by key."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._flights)

    def get(self, key: str) -> Flight | None:
        flight = self._flights.get(key)
        return flight if flight is not None and flight.joinable else None

    def start(
        self, flight: Flight, produce: Coroutine[Any, Any, None], *, register: bool = True
    ) -> None:
        """Run ``produce`` as the flight's producer; ``register``: let identical
        requests find and join it."""
        if register:
            self._flights[flight.key] = flight
        flight.on_trim = self.forget
        flight.on_idle = self._cancel
        task = asyncio.create_task(self._run(flight, produce), name=f"flight-{flight.key[:12]}")
        flight.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    def _cancel(self, flight: Flight) -> None:
        self.forget(flight)
        if flight.task is not None:
            flight.task.cancel()

    async def _run(self, flight: Flight, produce: Coroutine[Any, Any, None]) -> None:
        try:
            await produce
        except asyncio.CancelledError:
            flight.fail(Abandoned("the synthesis was cancelled: every client went away"))
        except Exception as exc:
            log.exception("single-flight producer failed")
            flight.fail(exc)
        finally:
            if not flight.ended:
                flight.fail(EngineUnavailable("the synthesis ended without a result"))
            self.forget(flight)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# -- across gateways -----------------------------------------------------------------

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class RedisFlights:
    """Cross-gateway single flight: a lock per key names the flight that runs,
    a stream per flight carries its chunks.

    ``lock_s``: how long a lock outlives its holder (it is refreshed while the
    synthesis runs); a follower notices a dead leader within about that.
    ``keep_s``: how long a finished stream stays readable for late followers.
    """

    def __init__(self, redis: RedisConnection, *, lock_s: float = 10.0, keep_s: float = 60.0):
        self.redis = redis
        self.lock_ms = max(1000, round(lock_s * 1000))
        self.keep_ms = max(1000, round(keep_s * 1000))
        self._release = redis.client.register_script(_RELEASE)
        self._refresh = redis.client.register_script(_REFRESH)

    def _lock(self, key: str) -> str:
        return self.redis.key("cache", "lock", key)

    def _stream(self, fid: str) -> str:
        return self.redis.key("cache", "stream", fid)

    def _followers(self, fid: str) -> str:
        return self.redis.key("cache", "followers", fid)

    async def claim(self, key: str) -> tuple[bool, str]:
        """(True, id) when this gateway leads a new flight for ``key``; else
        (False, id of the flight running elsewhere)."""
        client = self.redis.client
        for _ in range(5):
            fid = uuid.uuid4().hex
            if await client.set(self._lock(key), fid, nx=True, px=self.lock_ms):
                return True, fid
            holder = await client.get(self._lock(key))
            if holder is not None:
                return False, _text(holder)
        raise EngineUnavailable("could not settle who synthesizes this request", retry_after=1)

    def mirror(self, key: str, fid: str) -> Mirror:
        return Mirror(self, key, fid)

    async def follow(self, fid: str, flight: Flight) -> bool:
        """Feed ``flight`` from the flight ``fid`` on another gateway. True when
        it ended there (finished or failed); False when that flight went away
        before any audio (the caller may try again)."""
        client = self.redis.client
        stream = self._stream(fid)
        counter = self._followers(fid)
        async with client.pipeline(transaction=False) as pipe:
            pipe.incr(counter)
            pipe.pexpire(counter, self.keep_ms)
            await pipe.execute()
        last = "0-0"
        while True:
            found: Any = await client.xread({stream: last}, count=256, block=1000)
            if not found:
                holder = await client.get(self._lock(flight.key))
                if holder is not None and _text(holder) == fid:
                    continue
                found = await client.xread({stream: last}, count=256)  # ended meanwhile?
                if not found:
                    if flight.size:
                        raise EngineUnavailable(
                            "the gateway synthesizing this request went away mid-stream",
                            hint="Retry.",
                            retry_after=1,
                        )
                    return False
            for entry_id, fields in found[0][1]:
                last = entry_id
                if b"d" in fields:
                    if b"h" in fields:
                        flight.headers = _headers(fields[b"h"])
                    flight.append(bytes(fields[b"d"]))
                    await flight.room()
                elif b"end" in fields:
                    meta = json.loads(fields[b"end"])
                    if b"h" in fields and flight.headers is None:
                        flight.headers = _headers(fields[b"h"])
                    flight.finish(FlightResult(**meta))
                    return True
                elif b"err" in fields:
                    err = json.loads(fields[b"err"])
                    if err.get("abandoned") and not flight.size:
                        return False
                    flight.fail(_error(err), refused=bool(err.get("refused")))
                    return True


class Mirror:
    """The leading gateway's side: holds the lock, writes the stream."""

    def __init__(self, flights: RedisFlights, key: str, fid: str) -> None:
        self.flights = flights
        self.key = key
        self.fid = fid
        self._client = flights.redis.client
        self._stream = flights._stream(fid)
        self._broken = False
        self._sent_headers = False
        self._refresher = asyncio.create_task(self._keep_lock(), name=f"flight-lock-{fid[:8]}")

    async def _keep_lock(self) -> None:
        lock = self.flights._lock(self.key)
        while True:
            await asyncio.sleep(self.flights.lock_ms / 3000)
            try:
                held = await self.flights._refresh(
                    keys=[lock], args=[self.fid, self.flights.lock_ms]
                )
            except RedisError:
                log.warning("single flight: could not refresh the lock", exc_info=True)
                continue
            if not held:
                return

    async def _add(self, fields: dict[str, Any]) -> None:
        if self._broken:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.xadd(self._stream, cast(Any, fields))
                pipe.pexpire(self._stream, self.flights.keep_ms)
                await pipe.execute()
        except RedisError:
            # Local readers are unaffected; remote followers see the lock go
            # (it is released below or expires) and synthesize themselves.
            log.warning("single flight: Redis stream write failed", exc_info=True)
            self._broken = True

    async def chunk(self, data: bytes, headers: Headers | None) -> None:
        fields: dict[str, Any] = {"d": data}
        if headers is not None and not self._sent_headers:
            fields["h"] = json.dumps([list(h) for h in headers])
            self._sent_headers = True
        await self._add(fields)

    async def finish(self, result: FlightResult, headers: Headers | None) -> None:
        fields: dict[str, Any] = {"end": json.dumps(asdict(result))}
        if headers is not None:
            fields["h"] = json.dumps([list(h) for h in headers])
        await self._add(fields)
        await self.close()

    async def fail(self, exc: BaseException, *, refused: bool = False) -> None:
        await self._add({"err": json.dumps(_describe(exc, refused))})
        await self.close()

    async def followers(self) -> int:
        try:
            value = await self._client.get(self.flights._followers(self.fid))
        except RedisError:
            return 1  # cannot tell: keep going rather than strand someone
        return int(value or 0)

    async def close(self) -> None:
        self._refresher.cancel()
        with contextlib.suppress(RedisError):
            await self.flights._release(keys=[self.flights._lock(self.key)], args=[self.fid])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _headers(raw: bytes) -> Headers:
    return tuple((str(k), str(v)) for k, v in json.loads(raw))


def _describe(exc: BaseException, refused: bool) -> dict[str, Any]:
    if isinstance(exc, Abandoned):
        return {"abandoned": True, "code": exc.code, "message": exc.message}
    if isinstance(exc, VoxgateError):
        return {
            "code": exc.code,
            "message": exc.message,
            "hint": exc.hint,
            "retry_after": exc.retry_after,
            "refused": refused,
        }
    return {"code": errors.INTERNAL_ERROR, "message": "synthesis failed", "refused": refused}


def _error(described: dict[str, Any]) -> VoxgateError:
    code = described.get("code")
    try:
        return VoxgateError(
            str(described.get("message") or "synthesis failed"),
            code=code if code in errors.CODES else errors.INTERNAL_ERROR,
            hint=described.get("hint"),
            retry_after=described.get("retry_after"),
        )
    except ValueError:
        return VoxgateError("synthesis failed")


def call_soon_checked(coro_fn: Callable[[], Awaitable[None]]) -> None:
    """Run a small follow-up without awaiting it (logged if it fails)."""

    async def run() -> None:
        try:
            await coro_fn()
        except Exception:
            log.exception("single flight: follow-up failed")

    task = asyncio.create_task(run())
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task[None]] = set()
