"""A load generator for speech servers, in the spirit of riva_tts_perf_client.

Two ways to offer load:

* **closed loop** (:func:`run_closed`): N parallel streams, each sending M
  requests one after another. Measures latency at a given concurrency.
* **open loop** (:func:`run_open`): requests arrive at a fixed average rate
  (Poisson), whether or not earlier ones have finished. This is how overload
  really happens; a closed loop slows itself down and hides it.

Time to first audio (TTFA) runs from just before the request is written to the
first byte of the body: voxgate sends headers only with the first audio, so
this is what a player waits for. Also measured: gaps between chunks, total
latency, audio duration (from PCM or WAV byte counts and X-Sample-Rate), hence
the real-time factor (RTF: seconds of waiting per second of audio) and RTFX
(seconds of audio delivered per wall second, all streams together).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from voxgate.bench import http1
from voxgate.bench.stats import summarize

Route = Literal["openai", "native"]


@dataclass(slots=True)
class Sample:
    ok: bool
    status: int
    total_s: float
    ttfa_s: float | None = None
    audio_s: float | None = None
    bytes: int = 0
    gaps_s: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class RunResult:
    label: str
    samples: list[Sample]
    wall_s: float
    concurrency: int | None = None
    offered_rps: float | None = None

    def report(self) -> dict[str, Any]:
        ok = [s for s in self.samples if s.ok]
        with_audio = [s for s in ok if s.audio_s]
        audio = sum(s.audio_s or 0.0 for s in with_audio)
        waited = sum(s.total_s for s in with_audio)
        return {
            "label": self.label,
            "concurrency": self.concurrency,
            "offered_rps": self.offered_rps,
            "requests": len(self.samples),
            "ok": len(ok),
            "error_rate": round(1 - len(ok) / len(self.samples), 4) if self.samples else None,
            "errors": dict(Counter(s.error or str(s.status) for s in self.samples if not s.ok)),
            "wall_s": round(self.wall_s, 3),
            "rps": round(len(ok) / self.wall_s, 2) if self.wall_s else None,
            "ttfa_ms": summarize([s.ttfa_s for s in ok if s.ttfa_s is not None]),
            "gap_ms": summarize([g for s in ok for g in s.gaps_s]),
            "total_ms": summarize([s.total_s for s in ok]),
            "audio_s": round(audio, 2) if with_audio else None,
            "rtf": round(waited / audio, 4) if audio else None,
            "rtfx": round(audio / self.wall_s, 2) if audio and self.wall_s else None,
        }


RequestFn = Callable[[int], Awaitable[Sample]]
OnSample = Callable[[Sample], None]


async def run_closed(
    request: RequestFn,
    concurrency: int,
    per_stream: int,
    *,
    label: str = "",
    on_sample: OnSample | None = None,
    warmup: int = 1,
    ramp_s: float = 0.5,
) -> RunResult:
    """``concurrency`` streams of ``per_stream`` sequential requests, in steady state.

    Streams start spread over ``ramp_s`` and each sends ``warmup`` requests
    that are not recorded, then its measured ones, with no barrier in between:
    starting every stream at the same instant would measure a synchronized
    burst (which the open-loop runs cover), not latency at this concurrency.
    """
    samples: list[Sample] = []
    first_start: list[float] = []

    async def stream(worker: int) -> None:
        await asyncio.sleep(ramp_s * worker / max(1, concurrency))
        for i in range(warmup):
            await request(-(worker * warmup + i) - 1)
        first_start.append(time.perf_counter())
        for i in range(per_stream):
            sample = await request(worker * per_stream + i)
            samples.append(sample)
            if on_sample:
                on_sample(sample)

    await asyncio.gather(*(stream(w) for w in range(concurrency)))
    wall = time.perf_counter() - min(first_start) if first_start else 0.0
    return RunResult(label, samples, wall, concurrency=concurrency)


async def run_open(
    request: RequestFn,
    rate: float,
    duration_s: float,
    *,
    label: str = "",
    on_sample: OnSample | None = None,
    seed: int = 0,
) -> RunResult:
    """Poisson arrivals at ``rate`` per second for ``duration_s``; waits for all."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(n: int) -> None:
        sample = await request(n)
        samples.append(sample)
        if on_sample:
            on_sample(sample)

    started = time.perf_counter()
    next_at = started
    n = 0
    while True:
        next_at += rng.expovariate(rate)
        if next_at - started >= duration_s:
            break
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        tasks.append(asyncio.create_task(one(n)))
        n += 1
    await asyncio.gather(*tasks)
    return RunResult(label, samples, time.perf_counter() - started, offered_rps=rate)


DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog. voxgate streams speech sentence by sentence."
)


@dataclass(frozen=True, slots=True)
class Target:
    """What to request: a route, and the body fields that matter."""

    route: Route = "openai"
    text: str = DEFAULT_TEXT
    voice: str | None = None
    model: str | None = None
    format: str = "pcm"
    sample_rate: int | None = None
    priority: str | None = None  # realtime | batch

    @property
    def path(self) -> str:
        return "/v1/audio/speech" if self.route == "openai" else "/v1/tts"

    def body(self, n: int) -> dict[str, Any]:
        if self.route == "openai":
            body: dict[str, Any] = {"input": self.text, "response_format": self.format}
            if self.model:
                body["model"] = self.model
        else:
            body = {"text": self.text, "format": self.format, "stream": True}
            if self.model:
                body["engine"] = self.model
        if self.voice:
            body["voice"] = self.voice
        if self.sample_rate:
            body["sample_rate"] = self.sample_rate
        if self.priority:
            body["priority"] = self.priority
        return body


def _audio_seconds(fmt: str, size: int, rate: int) -> float | None:
    if not rate:
        return None
    if fmt == "pcm":
        return size / 2 / rate
    if fmt == "wav":
        return max(0, size - 44) / 2 / rate
    return None  # compressed: would need decoding; not measured


def http_request(client: http1.Client, target: Target) -> RequestFn:
    """A request function that streams the response and times it."""

    async def send(n: int) -> Sample:
        started = time.perf_counter()
        first: float | None = None
        last = started
        gaps: list[float] = []
        size = 0
        conn = None
        try:
            async with asyncio.timeout(client.timeout_s):
                response, conn = await client.post_json(target.path, target.body(n))
                if response.status != 200:
                    body = await response.read()
                    client.release(conn, response)
                    total = time.perf_counter() - started
                    return Sample(
                        False, response.status, total, error=_error_code(body, response.status)
                    )
                async for chunk in response.chunks():
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    else:
                        gaps.append(now - last)
                    last = now
                    size += len(chunk)
                client.release(conn, response)
        except (http1.ProtocolError, OSError, TimeoutError) as exc:
            if conn is not None:
                conn.close()
            return Sample(False, 0, time.perf_counter() - started, error=type(exc).__name__)
        total = time.perf_counter() - started
        rate = int(response.headers.get("x-sample-rate", "0") or 0)
        audio = _audio_seconds(target.format, size, rate)
        ttfa = first - started if first is not None else None
        return Sample(True, 200, total, ttfa, audio, size, gaps)

    return send


def _error_code(body: bytes, status: int) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return str(status)
