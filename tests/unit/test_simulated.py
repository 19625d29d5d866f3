from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.simulated import SPEAKERS, SimulatedEngine, tone_pattern
from voxgate.errors import EngineError
from voxgate.text.markup import parse
from voxgate.text.split import split


def request(text: str, speaker: int = 0, speed: float = 1.0) -> EngineRequest:
    return EngineRequest("r", Mode.SFT, tuple(split(parse(text))), SPEAKERS[speaker], speed=speed)


async def timed(engine: SimulatedEngine, req: EngineRequest) -> tuple[float, float, np.ndarray]:
    started = time.monotonic()
    first = None
    parts = []
    async for chunk in engine.synthesize(req):
        first = first if first is not None else time.monotonic() - started
        parts.append(chunk.samples)
    return first or 0.0, time.monotonic() - started, np.concatenate(parts)


async def test_timing_model() -> None:
    engine = SimulatedEngine(first_chunk_ms=100, rtf=0.2, chunk_ms=200)
    first, total, audio = await timed(
        engine, request("一句十六个字的话，用来测试时间模型是否正确。")
    )
    seconds = len(audio) / 24000
    assert first == pytest.approx(0.100, abs=0.03)
    # after the first chunk, each further chunk costs its audio x rtf
    assert total == pytest.approx(0.100 + (seconds - 0.2) * 0.2, abs=0.05)


async def test_deterministic_audio_per_text_speaker_and_speed() -> None:
    engine = SimulatedEngine(first_chunk_ms=0, rtf=0)
    a = (await timed(engine, request("Hello there.")))[2]
    b = (await timed(engine, request("Hello there.")))[2]
    c = (await timed(engine, request("Hello again.")))[2]
    d = (await timed(engine, request("Hello there.", speaker=1)))[2]
    e = (await timed(engine, request("Hello there.", speed=2.0)))[2]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c[: len(a)])
    assert not np.array_equal(a, d)
    assert len(e) == pytest.approx(len(a) / 2, abs=2)
    expected = np.concatenate(engine.expected_audio(request("Hello there.")))
    assert np.array_equal(a, expected)


def test_tone_pattern_is_clean() -> None:
    x = tone_pattern("abc", 1.0, 24000, 220.0)
    assert len(x) == 24000
    assert np.isfinite(x).all()
    assert np.abs(x).max() <= 0.3 + 1e-6


async def test_saturation_degrades_every_request() -> None:
    engine = SimulatedEngine(first_chunk_ms=100, rtf=0, capacity=2, saturation="degrade")
    alone = (await timed(engine, request("Short.")))[0]
    together = await asyncio.gather(*(timed(engine, request("Short.")) for _ in range(4)))
    firsts = [t[0] for t in together]
    assert alone == pytest.approx(0.1, abs=0.03)
    assert min(firsts) == pytest.approx(0.2, abs=0.05)  # 4 running on capacity 2: twice as slow


async def test_saturation_queues_beyond_capacity() -> None:
    engine = SimulatedEngine(first_chunk_ms=100, rtf=0, capacity=2, saturation="queue")
    together = await asyncio.gather(*(timed(engine, request("Short.")) for _ in range(4)))
    firsts = sorted(t[0] for t in together)
    assert firsts[0] == pytest.approx(0.1, abs=0.03)
    assert firsts[-1] == pytest.approx(0.2, abs=0.05)  # the second pair waits for the first


async def consume(engine: SimulatedEngine, req: EngineRequest, into: list | None = None) -> None:
    async for chunk in engine.synthesize(req):
        if into is not None:
            into.append(chunk)


@pytest.mark.parametrize("kind", ["before", "mid"])
async def test_error_faults(kind: str) -> None:
    engine = SimulatedEngine(first_chunk_ms=0, rtf=0, chunk_ms=100)
    chunks: list = []
    with pytest.raises(EngineError):
        await consume(engine, request(f"Long enough text for several chunks #fault:{kind}"), chunks)
    assert len(chunks) == (0 if kind == "before" else 1)
    assert engine.stats.failed == 1


async def test_hang_and_stall_are_cancellable() -> None:
    engine = SimulatedEngine(first_chunk_ms=0, rtf=0, chunk_ms=100)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(consume(engine, request("stuck #fault:hang")), 0.2)
    got: list = []
    stalled = request("Several chunks of audio then #fault:stall")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(consume(engine, stalled, got), 0.2)
    assert len(got) == 1
    assert engine.stats.active == 0


async def test_nan_fault_emits_non_finite_samples() -> None:
    engine = SimulatedEngine(first_chunk_ms=0, rtf=0)
    audio = (await timed(engine, request("bad samples #fault:nan")))[2]
    assert np.isnan(audio).any()
    assert np.isinf(audio).any()


async def test_fault_rates() -> None:
    engine = SimulatedEngine(first_chunk_ms=0, rtf=0, fault_rates={"before": 0.5}, seed=3)
    failures = 0
    for _ in range(200):
        try:
            await timed(engine, request("x"))
        except EngineError:
            failures += 1
    assert 70 < failures < 130
    with pytest.raises(ValueError, match="unknown fault"):
        SimulatedEngine(fault_rates={"meteor": 1.0})


async def test_shared_gpu_slows_running_work_when_others_join() -> None:
    from voxgate.engines.simulated import SharedGpu

    gpu = SharedGpu(capacity=1)
    started = time.monotonic()
    finished: dict[str, float] = {}

    async def job(name: str, delay: float, work: float) -> None:
        await asyncio.sleep(delay)
        await gpu.work(work)
        finished[name] = time.monotonic() - started

    await asyncio.gather(job("first", 0, 0.1), *(job(f"late{i}", 0.05, 0.05) for i in range(3)))
    # 50 ms alone at full speed; then 4 share one unit: each remaining 50 ms takes 200 ms
    assert finished["first"] == pytest.approx(0.25, abs=0.04)
    assert max(finished.values()) == pytest.approx(0.25, abs=0.04)
    assert gpu.active == 0
