"""``worker``: an engine that runs in other processes (``voxgate worker``).

One engine name, any number of worker processes serving it, found one of two
ways:

* ``urls``: a fixed list (``http://gpu1:8090``, ``unix:/run/voxgate.sock``);
  each is probed every ``health_interval_s`` and taken out of routing while
  it does not answer;
* ``engine``: the name the workers serve, looked up every ``refresh_s`` in
  the Redis registry the workers keep their heartbeats in
  (:mod:`voxgate.worker.registry`). A worker appears when it starts and is
  gone once it stops or its heartbeat expires.

It presents ONE engine to the pipeline: the capabilities and speakers the
workers report, and a capacity that is the sum of the live workers'
capacities, updated as they come and go (the pipeline resizes admission
through :meth:`Engine.watch_capacity`). Workers must serve the same model: a
worker whose capabilities differ from the others' in anything but capacity
is logged and not used.

Each call goes to the live worker with the least outstanding work per unit
of capacity: this gateway's own calls in flight there, plus the other
gateways' (the heartbeat's count minus ours); equally loaded workers take
turns. A call that fails before its first audio (connection refused, the
worker draining or overloaded, its process dead) is tried again on another
worker, at most ``retries`` more times, waiting up to
``wait_for_worker_s`` when no worker is there (a supervised child
restarting). After the first audio a failure ends the stream with
``upstream_error`` (``engine_timeout`` if it stalled): repeating speech is
worse than a clean, detectable failure. A connection failure takes the
worker out of routing at once; it comes back when it answers again.

Workers at ``https://`` URLs (a worker started with a TLS certificate, see
:mod:`voxgate.worker.tls`) are verified against ``tls_ca``, else
``VOXGATE_WORKER_TLS_CA``, else the system's trust store; never unverified.

Like other remote engines it is ready once started, whether or not a worker
is serving (a gateway without workers still answers, with a clean 503
``engine_unavailable``); ``healthy`` says whether one is, for ``/readyz``.

Errors the engine raised on the worker arrive with their codes: a
``language_unsupported`` there is the same 400 here, ``engine_failed`` the
same 500.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxgate import errors
from voxgate.audio.prompt import PromptAudio
from voxgate.diagnostics import Check, fail, ok, warn
from voxgate.engines.base import AudioChunk, Capabilities, Engine, EngineRequest, Mode, Speaker
from voxgate.engines.remote import RemoteOptions
from voxgate.errors import (
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    UpstreamError,
    VoxgateError,
)
from voxgate.worker.client import WorkerClient, WorkerFailure, WorkerInfo
from voxgate.worker.protocol import ProtocolError
from voxgate.worker.registry import WorkerRecord, WorkerRegistry
from voxgate.worker.tls import client_context

log = logging.getLogger(__name__)

# Errors that say "not this worker, not now": another one may take the call.
_ELSEWHERE = frozenset({errors.ENGINE_UNAVAILABLE, errors.ENGINE_OVERLOADED, errors.CIRCUIT_OPEN})

# What the engine says about itself before any worker has answered: nothing
# can be served yet (it is not ready), and admission has one slot.
_UNKNOWN = Capabilities(
    modes=frozenset({Mode.SFT}),
    languages=frozenset(),
    sample_rate=24000,
    streaming=True,
    max_concurrency=1,
)


_REMOTE_OPTIONS = [f for f in RemoteOptions.__dataclass_fields__ if f != "url"]


def same_model(a: Capabilities, b: Capabilities) -> bool:
    """Workers are interchangeable when all but capacity matches."""
    return dataclasses.replace(a, max_concurrency=1) == dataclasses.replace(b, max_concurrency=1)


@dataclass(eq=False)
class WorkerState:
    """One worker as this gateway sees it."""

    key: str
    url: str
    client: WorkerClient
    info: WorkerInfo | None = None
    record: WorkerRecord | None = None  # its last heartbeat (discovered workers)
    in_flight: int = 0  # this gateway's calls there now
    others: int = 0  # other gateways' calls, from its last heartbeat
    routed: int = 0  # calls sent to it
    served: int = 0
    failed: int = 0
    down: str | None = None  # why it is out of routing until it answers again
    draining: bool = False  # no new calls (a supervised child being replaced)
    gone: bool = False  # left the pool; its client closes once idle
    mismatch: str | None = None  # serves something else than the other workers
    probing: bool = False

    @property
    def capacity(self) -> int:
        if self.info is not None:
            return self.info.capabilities.max_concurrency
        return self.record.capacity if self.record is not None else 0

    @property
    def routable(self) -> bool:
        return (
            self.info is not None
            and self.down is None
            and not self.draining
            and not self.gone
            and self.mismatch is None
        )

    @property
    def load(self) -> float:
        return (self.in_flight + self.others) / max(1, self.capacity)

    def to_dict(self) -> dict[str, Any]:
        record = self.record
        return {
            "id": self.info.worker_id if self.info else (record.id if record else self.key),
            "url": self.url,
            "routable": self.routable,
            "down": self.down,
            "draining": self.draining,
            "mismatch": self.mismatch,
            "capacity": self.capacity,
            "in_flight": self.in_flight,
            "others_in_flight": self.others,
            "routed": self.routed,
            "served": self.served,
            "failed": self.failed,
            "pid": self.info.pid if self.info else (record.pid if record else None),
            "rss_mb": round(record.rss_bytes / 2**20, 1) if record else None,
        }


class WorkerEngine(Engine):
    """See the module docstring."""

    kind = "worker"
    # A subclass that adds and removes workers itself (the supervisor) needs
    # neither urls nor a registry.
    managed = False

    def __init__(
        self,
        name: str = "worker",
        *,
        urls: Sequence[str] | None = None,
        engine: str | None = None,
        refresh_s: float = 1.0,
        wait_for_worker_s: float = 3.0,
        token_env: str | None = None,
        tls_ca: str | None = None,
        redis_url: str | None = None,
        redis_prefix: str | None = None,
        connections: int = 64,
        **options: Any,
    ) -> None:
        super().__init__(name)
        options.setdefault("health_interval_s", 2.0)
        options["url"] = name  # replaced below by a label of where the workers are
        remote = RemoteOptions.take(options)
        if options:
            raise TypeError(
                f"engine {name!r} (worker): unknown options {sorted(options)}; known: urls, "
                "engine, refresh_s, wait_for_worker_s, token_env, tls_ca, redis_url, redis_prefix, "
                f"connections, {', '.join(_REMOTE_OPTIONS)}"
            )
        if not self.managed and bool(urls) == bool(engine):
            raise ValueError(
                f"engine {name!r} (worker): give either urls (a list of worker URLs) or "
                "engine (the engine name workers register under in Redis)"
            )
        if refresh_s <= 0 or wait_for_worker_s < 0:
            raise ValueError(f"engine {name!r}: refresh_s must be > 0, wait_for_worker_s >= 0")
        label = f"redis:{engine}" if engine else ",".join(urls or ()) or name
        self.options = dataclasses.replace(remote, url=label)
        self.urls = list(urls or ())
        self.served_engine = engine
        self.refresh_s = refresh_s
        self.wait_for_worker_s = wait_for_worker_s
        self._token_env = token_env
        if tls_ca is not None and not Path(tls_ca).expanduser().is_file():
            raise ValueError(f"engine {name!r} (worker): tls_ca {tls_ca} is not a readable file")
        self._tls_ca = Path(tls_ca) if tls_ca is not None else None
        self._tls: ssl.SSLContext | None = None
        self._redis_url = redis_url
        self._redis_prefix = redis_prefix
        self._connections = connections
        self._token: str | None = None
        self._workers: dict[str, WorkerState] = {}
        self._reference: WorkerInfo | None = None
        self._capabilities = _UNKNOWN
        self._capacity = 0
        self._listeners: list[Callable[[int], None]] = []
        self._change: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._redis: Any = None
        self._registry: WorkerRegistry | None = None
        self._turn = 0
        self._last_error: str | None = None

    # -- the engine protocol ---------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def speakers(self) -> Sequence[Speaker]:
        return self._reference.speakers if self._reference else ()

    def default_speaker(self) -> Speaker | None:
        speakers = self.speakers()
        wanted = self._reference.default_speaker if self._reference else None
        found = next((s for s in speakers if s.id == wanted), None)
        return found or (speakers[0] if speakers else None)

    @property
    def healthy(self) -> bool | None:
        if not self._ready:
            return None
        return any(w.routable for w in self._workers.values())

    def watch_capacity(self, listener: Callable[[int], None]) -> None:
        self._listeners.append(listener)

    def describe(self) -> dict[str, Any]:
        source = "redis" if self.served_engine else "urls" if self.urls else "supervised"
        described: dict[str, Any] = {
            "source": source,
            "capacity": self._capacity,
            "workers": [w.to_dict() for w in self._workers.values()],
        }
        if self.served_engine:
            described["serves"] = self.served_engine
        if self._reference is not None:
            described["worker_kind"] = self._reference.kind
        if self._last_error is not None:
            described["last_probe_error"] = self._last_error
        return described

    async def start(self) -> None:
        self._change = asyncio.Event()
        self._token = self._resolve_token()
        self._tls = self._resolve_tls()
        if self.urls:
            for url in self.urls:
                self._add(url, url)
            await asyncio.gather(*(self._probe(w) for w in list(self._workers.values())))
        elif self.served_engine:
            self._registry = WorkerRegistry(self._connect_redis())
            try:
                await self._discover()
            except Exception as exc:
                log.warning("engine %s: reading the worker registry failed: %r", self.name, exc)
            self._tasks.append(
                asyncio.create_task(self._discover_loop(), name=f"{self.name}-discovery")
            )
        if self.urls or self.managed:  # a registry's heartbeats say which workers live
            self._tasks.append(asyncio.create_task(self._health_loop(), name=f"{self.name}-health"))
        self._ready = True
        if not self.ready and not self.managed:
            log.warning(
                "engine %s: no worker is serving yet (%s); requests get 503 until one is",
                self.name,
                self.options.url,
            )

    async def close(self) -> None:
        self._ready = False
        for task in [*self._tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        self._tasks.clear()
        for worker in list(self._workers.values()):
            await worker.client.close()
        self._workers.clear()
        if self._redis is not None:
            await self._redis.close()
            self._redis = None

    async def prepare_voice(self, prompt: PromptAudio) -> bool:
        workers = [w for w in self._workers.values() if w.routable]
        done = await asyncio.gather(
            *(w.client.prepare_voice(prompt) for w in workers), return_exceptions=True
        )
        for worker, result in zip(workers, done, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "engine %s: %s could not prepare a voice: %r", self.name, worker.url, result
                )
        return any(r is True for r in done)

    async def forget_voice(self, voice_id: str) -> None:
        workers = [w for w in self._workers.values() if w.routable]
        done = await asyncio.gather(
            *(w.client.forget_voice(voice_id) for w in workers), return_exceptions=True
        )
        for worker, result in zip(workers, done, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "engine %s: %s could not forget a voice: %r", self.name, worker.url, result
                )

    async def diagnose(self) -> list[Check]:
        if self.urls:
            checks = []
            for url in self.urls:
                client = WorkerClient(
                    url, self.options, token=self._resolve_token(), tls=self._resolve_tls()
                )
                try:
                    info = await client.info()
                    checks.append(
                        ok(url, f"worker {info.worker_id} serves {info.engine} ({info.kind})")
                    )
                except Exception as exc:
                    checks.append(
                        fail(url, f"no worker answers: {exc}", "Start `voxgate worker` there.")
                    )
                finally:
                    await client.close()
            return checks
        if self.served_engine:
            try:
                registry = WorkerRegistry(self._connect_redis())
                records = await registry.live(self.served_engine)
            except Exception as exc:
                return [fail("registry", f"cannot read Redis: {exc}", "Check VOXGATE_REDIS_URL.")]
            finally:
                if self._redis is not None:
                    await self._redis.close()
                    self._redis = None
            if not records:
                return [
                    warn(
                        "workers",
                        f"no worker is registered for {self.served_engine!r}",
                        f"Start `voxgate worker --engine {self.served_engine}` with the same "
                        "VOXGATE_REDIS_URL and VOXGATE_REDIS_PREFIX.",
                    )
                ]
            return [ok("workers", ", ".join(f"{r.id} at {r.url}" for r in records))]
        return []

    # -- routing -----------------------------------------------------------------------

    async def _synthesize(self, request: EngineRequest) -> AsyncIterator[AudioChunk]:
        attempt = 0
        tried: set[str] = set()
        last: VoxgateError | WorkerFailure | None = None
        while True:
            worker = await self._choose(tried)
            if worker is None:
                if last is not None:
                    raise self._final(last)
                raise EngineUnavailable(
                    f"engine {self.name!r} has no worker to take the request",
                    hint="GET /v1/engines lists the workers and their state; retry shortly.",
                    retry_after=5,
                )
            tried.add(worker.key)
            worker.in_flight += 1
            worker.routed += 1
            self._routed(worker)
            received = False
            try:
                async for chunk in worker.client.synthesize(request):
                    received = True
                    yield chunk
                worker.served += 1
                return
            except WorkerFailure as failure:
                worker.failed += 1
                if failure.lost:
                    self._mark_down(worker, str(failure))
                if received or not failure.retryable:
                    raise self._error(failure, received) from None
                last = failure
            except ProtocolError as exc:
                worker.failed += 1
                raise UpstreamError(
                    f"worker {worker.url} broke the worker protocol: {exc}",
                    hint="The worker and the gateway may run different voxgate versions.",
                ) from None
            except VoxgateError as exc:
                if exc.status >= 500:
                    worker.failed += 1
                if received or exc.code not in _ELSEWHERE:
                    raise
                last = exc
            finally:
                worker.in_flight -= 1
                self._call_ended(worker)
            attempt += 1
            if attempt > self.options.retries:
                raise self._final(last)
            log.info(
                "engine %s: worker %s failed before any audio (%s); trying again",
                self.name,
                worker.url,
                last,
            )
            if not any(w.routable and w.key not in tried for w in self._workers.values()):
                await asyncio.sleep(self.options.backoff(attempt))

    async def _choose(self, tried: set[str]) -> WorkerState | None:
        """The least loaded routable worker, one not tried yet if possible;
        waits up to ``wait_for_worker_s`` while there is none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_for_worker_s
        while True:
            candidates = [w for w in self._workers.values() if w.routable]
            if candidates:
                fresh = [w for w in candidates if w.key not in tried] or candidates
                self._turn += 1
                n = len(fresh)
                ranked = sorted(
                    enumerate(fresh), key=lambda p: (p[1].load, (p[0] - self._turn) % n)
                )
                return ranked[0][1]
            remaining = deadline - loop.time()
            if remaining <= 0 or self._change is None or not self._worth_waiting():
                return None
            change = self._change
            try:
                await asyncio.wait_for(change.wait(), remaining)
            except TimeoutError:
                return None

    def _error(self, failure: WorkerFailure, received: bool) -> EngineError:
        if received and failure.kind == "timeout":
            return EngineTimeout(
                f"{failure} (stalled mid-stream)",
                hint="The stream was cut; retry the request.",
                retry_after=5,
            )
        if received:
            return UpstreamError(
                f"{failure} (mid-stream)",
                hint="The stream was cut; retry the request. Check the worker's log.",
            )
        if failure.kind == "unavailable":
            return EngineUnavailable(
                str(failure),
                hint="Start the worker or fix the engine's options; GET /v1/engines shows "
                "each worker's state.",
                retry_after=5,
            )
        if failure.kind == "timeout":
            return EngineTimeout(
                str(failure), hint="The worker is overloaded or stuck.", retry_after=5
            )
        return UpstreamError(str(failure), hint="Check the worker's log.")

    def _final(self, last: VoxgateError | WorkerFailure | None) -> VoxgateError:
        if isinstance(last, VoxgateError):
            return last
        if last is None:
            return EngineUnavailable(f"engine {self.name!r} has no worker", retry_after=5)
        return self._error(last, False)

    # -- hooks for the supervisor ------------------------------------------------------

    def _worth_waiting(self) -> bool:
        """Whether a call finding no routable worker should wait for one: only
        when some worker is known (it may be coming back, or being probed)."""
        return bool(self._workers)

    def _routed(self, worker: WorkerState) -> None:
        """A call was just sent to ``worker``."""

    def _observed(self, worker: WorkerState, health: dict[str, Any]) -> None:
        """The health loop just had a good reply from ``worker`` (ready, not
        draining, the same process as before).

        The supervisor reads the child's resident memory from it to recycle
        by ``recycle_rss_mb``: one health request per worker and interval
        rather than a second loop asking the same question."""

    def _call_ended(self, worker: WorkerState) -> None:
        """A call on ``worker`` ended, however it ended."""
        if worker.gone and worker.in_flight == 0:
            self._spawn(worker.client.close())
        self._notify()

    # -- the pool --------------------------------------------------------------------

    def _add(self, key: str, url: str) -> WorkerState:
        worker = WorkerState(
            key,
            url,
            WorkerClient(
                url, self.options, token=self._token, connections=self._connections, tls=self._tls
            ),
        )
        self._workers[key] = worker
        return worker

    def _remove(self, worker: WorkerState) -> None:
        """Out of the pool; its calls under way go on, its client closes after them."""
        worker.gone = True
        self._workers.pop(worker.key, None)
        if worker.in_flight == 0:
            self._spawn(worker.client.close())
        self._recompute()

    def _mark_down(self, worker: WorkerState, why: str) -> None:
        if worker.down is None:
            log.warning("engine %s: worker %s taken out of routing: %s", self.name, worker.url, why)
        worker.down = why
        self._recompute()

    async def _probe(self, worker: WorkerState) -> None:
        """Ask a new or failed worker what it serves; routable once it answers."""
        if worker.probing:
            return
        worker.probing = True
        try:
            info = await worker.client.info()
            health = await worker.client.health()
        except (WorkerFailure, ProtocolError, VoxgateError) as exc:
            if worker.down is None and worker.info is not None:
                self._mark_down(worker, str(exc))
            self._last_error = str(exc)
            return
        finally:
            worker.probing = False
        if not health.get("ready") or health.get("draining"):
            return
        self._accept(worker, info)
        if worker.down is not None:
            log.info("engine %s: worker %s answers again", self.name, worker.url)
            worker.down = None
        self._recompute()

    def _accept(self, worker: WorkerState, info: WorkerInfo) -> None:
        worker.info = info
        self._recompute()

    def _recompute(self) -> None:
        """Reference, capacity and capabilities from the workers now; tell
        admission when the capacity changed.

        The capabilities presented are those of a live worker (the first to
        answer, while it lives); workers that differ from it are not used."""
        live = [w for w in self._workers.values() if w.info is not None and not w.gone]
        if live and not any(w.info is self._reference for w in live):
            self._reference = live[0].info
        reference = self._reference
        for worker in live:
            assert worker.info is not None
            assert reference is not None
            if same_model(reference.capabilities, worker.info.capabilities):
                worker.mismatch = None
            elif worker.mismatch is None:
                worker.mismatch = (
                    f"it serves {worker.info.kind} with other capabilities than "
                    f"{reference.kind} on worker {reference.worker_id}"
                )
                log.error(
                    "engine %s: worker %s not used: %s", self.name, worker.url, worker.mismatch
                )
        capacity = sum(w.capacity for w in self._workers.values() if w.routable)
        base = reference.capabilities if reference else _UNKNOWN
        self._capabilities = dataclasses.replace(base, max_concurrency=max(1, capacity))
        if capacity != self._capacity:
            log.info("engine %s: capacity %d -> %d", self.name, self._capacity, capacity)
            self._capacity = capacity
            for listener in self._listeners:
                listener(max(1, capacity))
        self._notify()

    def _notify(self) -> None:
        if self._change is not None:
            self._change.set()
            self._change = asyncio.Event()

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- sources -------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.health_interval_s)
            await asyncio.gather(
                *(self._check(w) for w in list(self._workers.values())), return_exceptions=True
            )

    async def _check(self, worker: WorkerState) -> None:
        if worker.info is None or worker.down is not None:
            await self._probe(worker)
            return
        try:
            health = await worker.client.health()
        except (WorkerFailure, ProtocolError, VoxgateError) as exc:
            self._mark_down(worker, str(exc))
            return
        if not health.get("ready") or health.get("draining"):
            self._mark_down(worker, "it is not ready" if not health.get("ready") else "draining")
        elif worker.info is not None and health.get("worker_id") != worker.info.worker_id:
            # Another process behind the same URL (a restart, maybe a new
            # version): what it serves is read again.
            log.info("engine %s: a new worker process answers at %s", self.name, worker.url)
            await self._probe(worker)
        else:
            self._observed(worker, health)

    async def _discover_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self._discover()
            except Exception as exc:
                if not failing:
                    log.warning("engine %s: reading the worker registry failed: %r", self.name, exc)
                failing = True
            else:
                failing = False

    async def _discover(self) -> None:
        assert self._registry is not None
        assert self.served_engine is not None
        records = await self._registry.live(self.served_engine)
        seen: set[str] = set()
        for record in records:
            seen.add(record.id)
            worker = self._workers.get(record.id)
            if worker is None:
                worker = self._add(record.id, record.url)
                log.info("engine %s: worker %s appeared at %s", self.name, record.id, record.url)
            worker.record = record
            worker.others = max(0, record.in_flight - worker.in_flight)
            if worker.info is None or worker.down is not None:
                self._spawn(self._probe(worker))
        for key, worker in list(self._workers.items()):
            if key not in seen:
                log.info("engine %s: worker %s is gone (%s)", self.name, key, worker.url)
                self._remove(worker)
        self._recompute()

    # -- settings ------------------------------------------------------------------------

    def _resolve_token(self) -> str | None:
        if self._token_env:
            return os.environ.get(self._token_env) or None
        from voxgate.config import load_settings

        token = load_settings().worker_token
        return token.get_secret_value() if token else None

    def _resolve_tls(self) -> ssl.SSLContext:
        """How https:// workers are verified: this engine's ``tls_ca``, else
        ``VOXGATE_WORKER_TLS_CA``, else the system's trust store."""
        ca = self._tls_ca
        if ca is None:
            from voxgate.config import load_settings

            ca = load_settings().worker_tls_ca
        return client_context(ca)

    def _connect_redis(self) -> Any:
        from voxgate.config import load_settings
        from voxgate.serving.redis import RedisConnection

        url, prefix = self._redis_url, self._redis_prefix
        if url is None or prefix is None:
            settings = load_settings()
            url = url or settings.redis_url
            prefix = prefix if prefix is not None else settings.redis_prefix
        if not url:
            raise ValueError(
                f"engine {self.name!r} discovers workers in Redis: set VOXGATE_REDIS_URL "
                "(or the engine's redis_url option)"
            )
        self._redis = RedisConnection(url, prefix)
        return self._redis
