"""A load generator: N parallel streams, each sending M requests in turn.

Time to first audio is measured from just before the request is written to
the first byte of the body (voxgate sends headers only with the first audio,
so this is what a player waits for). Gaps between chunks, total latency and
the audio duration (from the X-Sample-Rate header and PCM byte count, or the
server's own accounting) give real-time factor and RTFX.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from voxgate.bench.stats import summarize


@dataclass(slots=True)
class Sample:
    ok: bool
    status: int
    total_s: float
    ttfa_s: float | None = None
    audio_s: float = 0.0
    bytes: int = 0
    gaps_s: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class RunResult:
    concurrency: int
    samples: list[Sample]
    wall_s: float

    def report(self) -> dict[str, Any]:
        ok = [s for s in self.samples if s.ok]
        audio = sum(s.audio_s for s in ok)
        busy = sum(s.total_s for s in ok)
        return {
            "concurrency": self.concurrency,
            "requests": len(self.samples),
            "ok": len(ok),
            "errors": dict(Counter(s.error or str(s.status) for s in self.samples if not s.ok)),
            "wall_s": round(self.wall_s, 3),
            "rps": round(len(ok) / self.wall_s, 2) if self.wall_s else None,
            "ttfa_ms": summarize([s.ttfa_s for s in ok if s.ttfa_s is not None]),
            "total_ms": summarize([s.total_s for s in ok]),
            "chunk_gap_ms": summarize([g for s in ok for g in s.gaps_s]),
            "audio_s": round(audio, 2),
            # seconds of compute per second of audio, per request (lower is better)
            "rtf": round(busy / audio, 4) if audio else None,
            # seconds of audio produced per wall second, all streams together
            "rtfx": round(audio / self.wall_s, 2) if self.wall_s else None,
        }


RequestFn = Callable[[int], Awaitable[Sample]]


async def run(request: RequestFn, concurrency: int, per_stream: int) -> RunResult:
    """Run ``concurrency`` streams of ``per_stream`` sequential requests."""
    samples: list[Sample] = []

    async def stream(worker: int) -> None:
        for i in range(per_stream):
            samples.append(await request(worker * per_stream + i))

    started = time.perf_counter()
    await asyncio.gather(*(stream(w) for w in range(concurrency)))
    return RunResult(concurrency, samples, time.perf_counter() - started)


def http_request(
    client: httpx.AsyncClient, path: str, body: Callable[[int], dict[str, Any]]
) -> RequestFn:
    """A request function for a JSON speech route that returns raw PCM."""

    async def send(n: int) -> Sample:
        started = time.perf_counter()
        first: float | None = None
        last = started
        gaps: list[float] = []
        size = 0
        try:
            async with client.stream("POST", path, json=body(n)) as response:
                if response.status_code != 200:
                    code = _error_code(await response.aread(), response.status_code)
                    total = time.perf_counter() - started
                    return Sample(False, response.status_code, total, error=code)
                async for chunk in response.aiter_raw():
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    else:
                        gaps.append(now - last)
                    last = now
                    size += len(chunk)
                total = time.perf_counter() - started
                rate = int(response.headers.get("x-sample-rate", "0") or 0)
                pcm = response.headers.get("content-type", "").startswith("audio/pcm")
                audio = size / 2 / rate if pcm and rate else 0.0
                ttfa = first - started if first is not None else None
                return Sample(True, 200, total, ttfa, audio, size, gaps)
        except httpx.HTTPError as exc:
            return Sample(False, 0, time.perf_counter() - started, error=type(exc).__name__)

    return send


def _error_code(body: bytes, status: int) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return str(status)
