from __future__ import annotations

import asyncio
import time

import pytest

from voxgate.bench import loadgen
from voxgate.bench.stats import summarize


def test_summarize() -> None:
    s = summarize([0.001 * i for i in range(1, 101)])
    assert s["avg"] == pytest.approx(50.5)
    assert s["p50"] == pytest.approx(50.5)
    assert s["p99"] == pytest.approx(99.01)
    assert summarize([])["p50"] is None


def fake(delay: float, fail_every: int = 0) -> loadgen.RequestFn:
    async def send(n: int) -> loadgen.Sample:
        started = time.perf_counter()
        await asyncio.sleep(delay)
        if fail_every and n >= 0 and n % fail_every == 0:
            return loadgen.Sample(False, 503, delay, error="engine_overloaded")
        return loadgen.Sample(True, 200, time.perf_counter() - started, delay / 2, audio_s=1.0)

    return send


async def test_closed_loop_counts_only_measured_requests() -> None:
    seen: list[int] = []

    async def send(n: int) -> loadgen.Sample:
        seen.append(n)
        return loadgen.Sample(True, 200, 0.0, 0.0)

    result = await loadgen.run_closed(send, 4, 5, warmup=2, ramp_s=0.01)
    assert len(result.samples) == 20
    assert sum(1 for n in seen if n < 0) == 8  # warm-up requests are not recorded
    assert sorted(n for n in seen if n >= 0) == list(range(20))


async def test_report() -> None:
    result = await loadgen.run_closed(fake(0.01, fail_every=4), 2, 8, warmup=0, ramp_s=0)
    report = result.report()
    assert report["requests"] == 16
    assert report["ok"] == 12
    assert report["errors"] == {"engine_overloaded": 4}
    assert report["error_rate"] == pytest.approx(0.25)
    assert report["ttfa_ms"]["p50"] == pytest.approx(5.0)
    assert report["rtfx"] > 0
    assert report["rtf"] == pytest.approx(0.01, abs=0.005)


async def test_open_loop_offers_the_requested_rate() -> None:
    result = await loadgen.run_open(fake(0.001), rate=200.0, duration_s=1.0, seed=1)
    assert 150 <= len(result.samples) <= 250
    assert result.report()["offered_rps"] == 200.0


def test_target_bodies() -> None:
    t = loadgen.Target(route="openai", text="hi", voice="alloy", model="sim", format="mp3")
    assert t.path == "/v1/audio/speech"
    assert t.body(0) == {"input": "hi", "response_format": "mp3", "model": "sim", "voice": "alloy"}
    n = loadgen.Target(route="native", text="hi", sample_rate=16000)
    assert n.path == "/v1/tts"
    assert n.body(0) == {"text": "hi", "format": "pcm", "stream": True, "sample_rate": 16000}
