"""One engine name, several endpoints: routing, breakers and failover.

An engine configured with ``endpoints`` (two CosyVoice servers on two GPU
hosts, say) is an :class:`EngineGroup`: it presents the engine protocol over
its endpoints, so the pipeline, admission and every surface see one engine
whose capacity is the sum of its endpoints' and need no knowledge of routing.

For each synthesis the group picks the endpoint with the least outstanding
work (in-flight calls per unit of capacity) among those that are ready, not
drained, and whose circuit breaker lets a call through. An endpoint that fails
before its first chunk is given up on and the call is tried on another one
(each endpoint at most once per request); after the first chunk a failure ends
the stream as it would without a group, since retrying then would repeat or
splice speech. When every endpoint's breaker is open, :meth:`ensure_available`
answers 503 ``circuit_open`` with the remaining cool-down, before admission
and before any response starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voxgate.audio.prompt import PromptAudio
from voxgate.diagnostics import Check
from voxgate.engines.base import (
    AudioChunk,
    Capabilities,
    Engine,
    EngineRequest,
    FeatureStore,
    Notice,
    Speaker,
)
from voxgate.errors import EngineUnavailable, RequestError
from voxgate.serving.breaker import (
    Breaker,
    BreakerFactory,
    BreakerSnapshot,
    BreakerState,
    CircuitOpen,
    Outcome,
    Permit,
)

log = logging.getLogger(__name__)

# The pipeline's watchdog starts its clock a moment before this module's does.
_TIMER_SLACK_S = 0.05


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """One endpoint as operators and metrics see it. ``breaker`` is None for an
    engine without endpoints (no breaker guards it)."""

    engine: str
    endpoint: str
    in_flight: int
    draining: bool
    ready: bool
    breaker: BreakerSnapshot | None

    @property
    def state(self) -> BreakerState | None:
        return None if self.breaker is None else self.breaker.state

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.endpoint,
            "ready": self.ready,
            "in_flight": self.in_flight,
            "draining": self.draining,
            "breaker": None if self.breaker is None else self.breaker.to_dict(),
        }


def _same_audio(a: Capabilities, b: Capabilities) -> bool:
    """Endpoints must be interchangeable: everything but capacity must match."""
    return dataclasses.replace(a, max_concurrency=1) == dataclasses.replace(b, max_concurrency=1)


class EngineGroup(Engine):
    """An engine whose calls go to one of several interchangeable endpoints."""

    def __init__(
        self,
        name: str,
        endpoints: Sequence[Engine],
        breakers: BreakerFactory,
        *,
        timeout_s: float,
    ) -> None:
        if not endpoints:
            raise ValueError(f"engine {name!r} has no endpoints")
        first = endpoints[0].capabilities
        for endpoint in endpoints[1:]:
            if not _same_audio(first, endpoint.capabilities):
                raise ValueError(
                    f"the endpoints of engine {name!r} differ in what they can do "
                    f"({endpoints[0].name} and {endpoint.name}); endpoints must be the "
                    "same model, differing only in where they run and their capacity"
                )
        self.endpoints = list(endpoints)
        super().__init__(name)
        self.kind = endpoints[0].kind
        self.timeout_s = timeout_s
        self._capabilities = dataclasses.replace(
            first, max_concurrency=sum(e.capabilities.max_concurrency for e in endpoints)
        )
        self._breakers: dict[str, Breaker] = {e.name: breakers.breaker(e.name) for e in endpoints}
        self._in_flight = {e.name: 0 for e in endpoints}
        self._draining: set[str] = set()
        self._turn = 0  # rotates the order among equally loaded endpoints

    # -- the engine protocol, over the endpoints --------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def speakers(self) -> Sequence[Speaker]:
        return self.endpoints[0].speakers()

    def default_speaker(self) -> Speaker | None:
        return self.endpoints[0].default_speaker()

    def check(self, request: EngineRequest) -> list[Notice]:
        return self.endpoints[0].check(request)

    @property
    def features(self) -> FeatureStore | None:
        return self.endpoints[0].features

    @features.setter
    def features(self, store: FeatureStore | None) -> None:
        # The app hands the store to each registered engine; its endpoints are
        # the ones that compute and keep features.
        for endpoint in self.endpoints:
            endpoint.features = store

    async def start(self) -> None:
        results = await asyncio.gather(*(e.start() for e in self.endpoints), return_exceptions=True)
        failed = [(e, r) for e, r in zip(self.endpoints, results, strict=True) if r is not None]
        for endpoint, exc in failed:
            log.error("engine %s: endpoint %s failed to start: %r", self.name, endpoint.name, exc)
        if len(failed) == len(self.endpoints):
            raise failed[0][1]
        self._ready = True

    async def close(self) -> None:
        self._ready = False
        for endpoint in self.endpoints:
            try:
                await endpoint.close()
            except Exception:
                log.exception("engine %s: endpoint %s failed to close", self.name, endpoint.name)

    @property
    def ready(self) -> bool:
        return self._ready and any(e.ready for e in self.endpoints)

    @property
    def healthy(self) -> bool | None:
        probed = [e.healthy for e in self.endpoints if e.healthy is not None]
        return any(probed) if probed else None

    def describe(self) -> Mapping[str, Any]:
        """Each endpoint, its breaker as last seen (:meth:`endpoint_details`
        reads it now)."""
        return {
            "endpoints": [
                self._details(e, self._breakers[e.name].last_known()) for e in self.endpoints
            ]
        }

    async def prepare_voice(self, prompt: PromptAudio) -> bool:
        done = await asyncio.gather(*(e.prepare_voice(prompt) for e in self.endpoints))
        return any(done)

    async def forget_voice(self, voice_id: str) -> None:
        for endpoint in self.endpoints:
            await endpoint.forget_voice(voice_id)

    async def diagnose(self) -> list[Check]:
        checks: list[Check] = []
        for endpoint in self.endpoints:
            for check in await endpoint.diagnose():
                checks.append(
                    dataclasses.replace(check, subject=f"{endpoint.name}: {check.subject}")
                )
        return checks

    # -- routing -------------------------------------------------------------------

    def endpoint(self, name: str) -> Engine:
        for endpoint in self.endpoints:
            if endpoint.name == name or endpoint.name == f"{self.name}#{name}":
                return endpoint
        raise KeyError(name)

    def drain(self, endpoint: str, draining: bool = True) -> None:
        """Stop (or resume) routing new calls to one endpoint; calls under way finish."""
        name = self.endpoint(endpoint).name
        if draining:
            self._draining.add(name)
        else:
            self._draining.discard(name)

    def drained(self) -> set[str]:
        return set(self._draining)

    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    def _routable(self) -> list[Engine]:
        return [e for e in self.endpoints if e.ready and e.name not in self._draining]

    def _order(self, exclude: set[str]) -> list[Engine]:
        """Least outstanding work first, ties broken by turns; an endpoint whose
        server failed its last health probe only when no other is left."""
        self._turn = (self._turn + 1) % len(self.endpoints)
        position = {e.name: i for i, e in enumerate(self.endpoints)}
        n = len(self.endpoints)

        def load(e: Engine) -> tuple[bool, float, int]:
            share = self._in_flight[e.name] / max(1, e.capabilities.max_concurrency)
            return e.healthy is False, share, (position[e.name] - self._turn) % n

        return sorted((e for e in self._routable() if e.name not in exclude), key=load)

    async def ensure_available(self) -> None:
        """Raise now (503) if no endpoint could take a call: every one drained
        or not ready (``engine_unavailable``), or refused by its breaker
        (``circuit_open``, Retry-After the shortest remaining cool-down)."""
        routable = self._routable()
        if not routable:
            raise EngineUnavailable(
                f"engine {self.name!r} has no endpoint taking work: every one is draining "
                "or not ready",
                hint="GET /v1/engines shows each endpoint's state; retry shortly.",
                retry_after=5,
            )
        waits: list[float] = []
        for endpoint in routable:
            snap = await self._breakers[endpoint.name].snapshot()
            if snap.allows:
                return
            waits.append(snap.retry_after_s or 1.0)
        raise self._circuit_open(min(waits))

    def _circuit_open(self, wait: float) -> CircuitOpen:
        return CircuitOpen(
            f"every endpoint of engine {self.name!r} is failing; its circuit breakers are open",
            hint="Retry after the number of seconds in Retry-After; GET /v1/engines shows "
            "each endpoint's breaker.",
            retry_after=max(1.0, wait),
        )

    async def _pick(self, exclude: set[str]) -> tuple[Engine, Permit] | None:
        for endpoint in self._order(exclude):
            permit = await self._breakers[endpoint.name].acquire()
            if permit is not None:
                return endpoint, permit
        return None

    async def _synthesize(self, request: EngineRequest) -> AsyncIterator[AudioChunk]:
        loop = asyncio.get_running_loop()
        tried: set[str] = set()
        failure: BaseException | None = None
        # Since when the consumer has been waiting for a chunk: across attempts,
        # as the pipeline's watchdog counts it.
        waiting, waiting_since = True, loop.time()
        while True:
            picked = await self._pick(tried)
            if picked is None:
                if failure is not None:
                    raise failure  # the last endpoint's error says the most
                await self.ensure_available()  # raises the right 503
                raise self._circuit_open(1.0)  # a breaker refused between check and claim
            endpoint, permit = picked
            tried.add(endpoint.name)
            outcome = Outcome.IGNORED
            received = False
            self._in_flight[endpoint.name] += 1
            try:
                async with contextlib.aclosing(endpoint.synthesize(request)) as chunks:
                    async for chunk in chunks:
                        received = received or chunk.samples.size > 0
                        waiting = False
                        yield chunk
                        waiting, waiting_since = True, loop.time()
                outcome = Outcome.SUCCESS
                return
            except RequestError:
                raise  # the request's fault, not the endpoint's
            except (asyncio.CancelledError, GeneratorExit):
                # The pipeline's watchdog cancels a call that produced nothing
                # for the engine's timeout: that is the endpoint hanging, not
                # the client leaving.
                if waiting and loop.time() - waiting_since >= self.timeout_s - _TIMER_SLACK_S:
                    outcome = Outcome.FAILURE
                raise
            except Exception as exc:
                outcome = Outcome.FAILURE
                if received:
                    raise
                failure = exc
                log.warning(
                    "engine %s: endpoint %s failed before any audio (%s); trying another "
                    "endpoint if one is left",
                    self.name,
                    endpoint.name,
                    exc,
                )
            finally:
                self._in_flight[endpoint.name] -= 1
                await self._breakers[endpoint.name].record(permit, outcome)

    # -- visibility ----------------------------------------------------------------

    def _status(self, endpoint: Engine, snap: BreakerSnapshot) -> EndpointStatus:
        return EndpointStatus(
            engine=self.name,
            endpoint=endpoint.name,
            in_flight=self._in_flight[endpoint.name],
            draining=endpoint.name in self._draining,
            ready=endpoint.ready,
            breaker=snap,
        )

    def _details(self, endpoint: Engine, snap: BreakerSnapshot) -> dict[str, Any]:
        return {
            **self._status(endpoint, snap).to_dict(),
            "kind": endpoint.kind,
            "capacity": endpoint.capabilities.max_concurrency,
            "healthy": endpoint.healthy,
            "stats": endpoint.stats.to_dict(),
            "info": dict(endpoint.describe()),
        }

    async def endpoint_details(self) -> list[dict[str, Any]]:
        """Everything about each endpoint, breakers read now (for the APIs)."""
        return [self._details(e, await self._breakers[e.name].snapshot()) for e in self.endpoints]

    async def endpoint_status(self) -> list[EndpointStatus]:
        """Each endpoint with its breaker's current state."""
        return [self._status(e, await self._breakers[e.name].snapshot()) for e in self.endpoints]

    def endpoint_status_cached(self) -> list[EndpointStatus]:
        """The same without waiting: breaker states as last seen (for metrics)."""
        return [self._status(e, self._breakers[e.name].last_known()) for e in self.endpoints]
