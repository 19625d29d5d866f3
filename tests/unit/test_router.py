"""EngineGroup over simulated endpoints, in process: capacity, routing by load,
drains, and what it refuses to build."""

from __future__ import annotations

import asyncio

import pytest

from voxgate.config import EngineConfig
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.registry import build_engine
from voxgate.engines.simulated import SPEAKERS, SimulatedEngine
from voxgate.errors import EngineUnavailable
from voxgate.serving.breaker import BreakerPolicy, LocalBreakers
from voxgate.serving.router import EngineGroup
from voxgate.text.markup import parse
from voxgate.text.split import split

FAST = {"first_chunk_ms": 20, "rtf": 0.01, "chunk_ms": 100}


def request(text: str = "Hello there.") -> EngineRequest:
    return EngineRequest("r", Mode.SFT, tuple(split(parse(text))), SPEAKERS[0])


def group(*endpoints: SimulatedEngine) -> EngineGroup:
    return EngineGroup("g", endpoints, LocalBreakers(BreakerPolicy()), timeout_s=5.0)


async def drain(engine: EngineGroup, text: str = "Hello there.") -> int:
    return sum([len(c.samples) async for c in engine.synthesize(request(text))])


def test_built_from_configuration_with_named_endpoints() -> None:
    config = EngineConfig(
        kind="simulated",
        options={**FAST, "capacity": 2},
        endpoints=[{"id": "gpu1"}, {"capacity": 6}],
    )
    engine = build_engine("g", config)
    assert isinstance(engine, EngineGroup)
    assert [e.name for e in engine.endpoints] == ["g#gpu1", "g#1"]
    assert engine.capabilities.max_concurrency == 8
    assert engine.kind == "simulated"
    assert not isinstance(build_engine("g", EngineConfig(kind="simulated")), EngineGroup)


def test_endpoints_must_be_the_same_model() -> None:
    with pytest.raises(ValueError, match="differ"):
        group(SimulatedEngine("g#0", **FAST), SimulatedEngine("g#1", sample_rate=16000, **FAST))
    with pytest.raises(ValueError, match="two endpoints"):
        build_engine("g", EngineConfig(kind="simulated", endpoints=[{"id": "a"}, {"id": "a"}]))


async def test_concurrent_requests_spread_by_load() -> None:
    small = SimulatedEngine("g#small", capacity=1, **FAST)
    large = SimulatedEngine("g#large", capacity=3, **FAST)
    engine = group(small, large)
    await engine.start()
    try:
        await asyncio.gather(*(drain(engine, f"Request {i}.") for i in range(8)))
    finally:
        await engine.close()
    # Least outstanding work per unit of capacity: the larger one takes more.
    assert small.stats.completed + large.stats.completed == 8
    assert large.stats.completed >= 5
    assert small.stats.completed >= 1


async def test_a_drained_endpoint_gets_nothing_new() -> None:
    first, second = SimulatedEngine("g#0", **FAST), SimulatedEngine("g#1", **FAST)
    engine = group(first, second)
    await engine.start()
    try:
        engine.drain("0")
        for i in range(4):
            assert await drain(engine, f"Request {i}.") > 0
        assert first.stats.started == 0
        assert second.stats.completed == 4
        engine.drain("g#1")  # by full name too
        with pytest.raises(EngineUnavailable, match="draining or not ready"):
            await engine.ensure_available()
        engine.drain("0", draining=False)
        await engine.ensure_available()
    finally:
        await engine.close()


async def test_visible_state_per_endpoint() -> None:
    engine = group(SimulatedEngine("g#0", **FAST), SimulatedEngine("g#1", **FAST))
    await engine.start()
    try:
        await drain(engine)
        status = await engine.endpoint_status()
        assert [s.endpoint for s in status] == ["g#0", "g#1"]
        assert {s.state.value for s in status if s.state} == {"closed"}
        assert sum(s.breaker.calls for s in status if s.breaker) == 1
        assert [s.state for s in engine.endpoint_status_cached()] == [s.state for s in status]
    finally:
        await engine.close()
