"""Metrics that mirror live state, read from the components when Prometheus
scrapes: admission queues and slots, engine load and health, the result
cache, circuit breakers.

Reading ``stats()`` at scrape time instead of keeping gauges up to date means
no bookkeeping on the request path, and a gauge can never drift from the
state it mirrors. Breakers are read as last seen (no Redis round trip while
Prometheus waits), and a part whose stats cannot be read drops its own
families from the scrape, with one warning, instead of failing the scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from voxgate.serving.admission import Priority

if TYPE_CHECKING:
    from starlette.datastructures import State

    from voxgate.pipeline import Pipeline

log = logging.getLogger("voxgate.obs")

# voxgate_breaker_state values (alert on > 0)
BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
CACHE_RESULTS = {
    "hits": "hit",
    "misses": "miss",
    "shared": "shared",
    "bypassed": "bypassed",
    "not_modified": "not_modified",
}


class HttpLoad(Protocol):
    http_in_flight: int


def _count(stats: Mapping[str, Any], key: str) -> float:
    value = stats.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


class LiveState:
    """A custom collector over the pipeline's engines and the app's parts."""

    def __init__(self, pipeline: Pipeline, app_state: State, http: HttpLoad) -> None:
        self._pipeline = pipeline
        self._state = app_state
        self._http = http
        self._warned: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "voxgate_http_in_flight_requests",
            "HTTP requests being served now (all routes).",
            value=self._http.http_in_flight,
        )
        for part, read in (
            ("engines", self._engines),
            ("admission", self._admission),
            ("cache", self._cache),
            ("breakers", self._breakers),
        ):
            yield from self._guarded(part, read)

    def _guarded(self, part: str, read: Callable[[], Iterable[Metric]]) -> Iterable[Metric]:
        try:
            return list(read())
        except Exception:
            if part not in self._warned:
                self._warned.add(part)
                log.warning("metrics: cannot read %s stats; left out", part, exc_info=True)
            return []

    def _engines(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "voxgate_in_flight_requests",
            "Syntheses the engine is running now.",
            labels=["engine"],
        )
        ready = GaugeMetricFamily(
            "voxgate_engine_ready", "1 when the engine is ready.", labels=["engine"]
        )
        healthy = GaugeMetricFamily(
            "voxgate_engine_healthy",
            "1 when the remote server behind the engine answered its last probe.",
            labels=["engine"],
        )
        runs = CounterMetricFamily(
            "voxgate_engine_syntheses",
            "Syntheses the engine finished, by outcome.",
            labels=["engine", "outcome"],
        )
        for engine in self._pipeline.registry:
            stats = engine.stats
            in_flight.add_metric([engine.name], stats.active)
            runs.add_metric([engine.name, "completed"], stats.completed)
            runs.add_metric([engine.name, "failed"], stats.failed)
            runs.add_metric([engine.name, "cancelled"], stats.cancelled)
            ready.add_metric([engine.name], float(bool(engine.ready)))
            if engine.healthy is not None:  # only remote engines probe
                healthy.add_metric([engine.name], float(engine.healthy))
        yield from (in_flight, ready, healthy, runs)

    def _admission(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(
            "voxgate_queue_length",
            "Requests waiting for an admission slot.",
            labels=["engine", "priority"],
        )
        capacity = GaugeMetricFamily(
            "voxgate_engine_capacity",
            "Admission slots (syntheses at once) of the engine.",
            labels=["engine"],
        )
        in_use = GaugeMetricFamily(
            "voxgate_engine_in_use", "Admission slots held now.", labels=["engine"]
        )
        admitted = CounterMetricFamily(
            "voxgate_admission_admitted", "Requests given a slot.", labels=["engine"]
        )
        rejected = CounterMetricFamily(
            "voxgate_admission_rejected",
            "Requests refused with 503 (queue full or wait too long).",
            labels=["engine"],
        )
        for name, admission in self._pipeline.admission.items():
            stats = admission.stats()
            for priority in Priority:  # every class, so the series exist before a wait
                key = priority.name.lower()
                queue.add_metric([name, key], stats.waiting.get(key, 0))
            capacity.add_metric([name], stats.capacity)
            in_use.add_metric([name], stats.in_use)
            admitted.add_metric([name], stats.admitted)
            rejected.add_metric([name], stats.rejected)
        yield from (queue, capacity, in_use, admitted, rejected)

    def _cache(self) -> Iterator[Metric]:
        cache = getattr(self._state, "cache", None)
        if cache is None:
            return
        stats = cache.stats()
        requests = CounterMetricFamily(
            "voxgate_cache_requests",
            "Requests that could use the result cache, by what it did (docs/operations.md).",
            labels=["result"],
        )
        for key, result in CACHE_RESULTS.items():
            requests.add_metric([result], _count(stats, key))
        yield requests
        yield GaugeMetricFamily(
            "voxgate_cache_entries",
            "Results held in the cache.",
            value=_count(stats, "entries"),
        )
        yield GaugeMetricFamily(
            "voxgate_cache_bytes",
            "Bytes of audio held in the cache.",
            value=_count(stats, "bytes"),
        )
        yield CounterMetricFamily(
            "voxgate_cache_evictions",
            "Results evicted to stay within the cache's size.",
            value=_count(stats, "evictions"),
        )

    def _breakers(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "voxgate_breaker_state",
            "Circuit breaker of an engine endpoint: 0 closed, 1 half open, 2 open.",
            labels=["engine", "endpoint"],
        )
        in_flight = GaugeMetricFamily(
            "voxgate_endpoint_in_flight_requests",
            "Syntheses an endpoint of an engine group is running now.",
            labels=["engine", "endpoint"],
        )
        draining = GaugeMetricFamily(
            "voxgate_endpoint_draining",
            "1 while an operator drains the endpoint (no new work).",
            labels=["engine", "endpoint"],
        )
        # Breaker states as last seen: no Redis round trip at scrape time.
        for status in self._pipeline.registry.endpoint_status_cached():
            if status.state is None:
                continue  # a single engine: no endpoints, no breaker
            labels = [status.engine, status.endpoint]
            state.add_metric(labels, BREAKER_VALUES[status.state.value])
            in_flight.add_metric(labels, status.in_flight)
            draining.add_metric(labels, float(status.draining))
        yield from (state, in_flight, draining)
